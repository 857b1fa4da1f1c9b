"""The studio's web app: one page, its two static files, and a small JSON API.

Every answer to a change carries the page fragments rendered on the server, so the
script only swaps HTML in. Safety, since the page can rewrite a file on disk:

* bound to loopback by default; any other host needs the API key (a bearer header,
  or the ``?key=`` link the CLI prints, which leaves an HttpOnly cookie);
* on loopback the ``Host`` header must name loopback (a DNS-rebinding page cannot
  reach the API), and a change must be ``application/json`` (which a cross-site form
  cannot send without the browser asking first).
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import socket
import threading
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from cotembed.errors import BusyError, CotembedError, InputError, LLMError
from cotembed.studio import _rendering as rendering
from cotembed.studio._state import OPTIMIZE_CANDIDATES, OPTIMIZE_SECONDS, ConflictError, EditOutcome, Studio

COOKIE = "cotembed_studio_key"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
IN_PLACE_EDITS = ("option", "prompt", "weight", "rule")
MAX_BODY_BYTES = 4 * 1024 * 1024
"""A system's YAML is a few kilobytes; a larger body is refused before it is read."""


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _error(status: int, message: str, type: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type, **extra}}, status_code=status)


def create_app(studio: Studio, *, api_key: str | None = None, loopback_only: bool = True) -> FastAPI:
    """The app serving ``studio``. ``api_key``: required on every request when set."""
    app = FastAPI(title="cotembed studio", docs_url=None, redoc_url=None, openapi_url=None)
    thumbs = rendering.Thumbnails(studio)
    key = api_key.encode("utf-8") if api_key else None

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        host = request.url.hostname or ""
        if loopback_only and not is_loopback(host):
            return _error(421, f"this studio answers on loopback only, not for host {host!r}", "wrong_host")
        if key is not None:
            given = request.query_params.get("key")
            if given is not None and request.method == "GET":
                if not hmac.compare_digest(given.encode("utf-8"), key):
                    return _error(401, "invalid API key", "authentication_error")
                response = RedirectResponse(request.url.path, status_code=303)
                response.set_cookie(COOKIE, given, httponly=True, samesite="strict")
                return response
            bearer = request.headers.get("authorization", "")
            candidate = bearer[7:] if bearer.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
            if not hmac.compare_digest(candidate.encode("utf-8"), key):
                return _error(401, "missing or invalid API key: open the link the studio printed, or send 'Authorization: Bearer <key>'",
                              "authentication_error")
        if request.method == "POST":
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return _error(415, "send changes as application/json", "unsupported_media_type")
            if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
                return _error(413, f"body larger than {MAX_BODY_BYTES} bytes", "payload_too_large")
        forwarded: Response = await call_next(request)
        return forwarded

    @app.exception_handler(CotembedError)
    async def cotembed_error(request: Request, exc: CotembedError) -> JSONResponse:
        if isinstance(exc, BusyError):
            return _error(409, str(exc), "busy")
        if isinstance(exc, ConflictError):
            return _error(409, str(exc), "other_tab")
        if isinstance(exc, LLMError):  # the LLM failed (unavailable, refused, garbled): nothing was proposed
            return _error(502, str(exc), "llm_error")
        return _error(422, str(exc), "invalid_request_error", problems=list(getattr(exc, "problems", []) or []))

    def answer(outcome: EditOutcome | None = None, message: str = "", skip: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": True if outcome is None else outcome.ok, "fragments": rendering.fragments(studio, thumbs, skip),
                               "metrics": rendering.metrics(studio), "message": message, **extra}
        if outcome is not None:
            out.update(problems=outcome.problems, field=outcome.field)
        return out

    async def body(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            raise InputError("the body is not JSON") from None
        if not isinstance(data, dict):
            raise InputError("the body must be a JSON object")
        return data

    def editing(data: dict[str, Any]) -> None:
        tab = data.get("tab")
        studio.check_holder(tab if isinstance(tab, str) else None)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return rendering.page(studio, thumbs)

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        media = rendering.STATIC_FILES.get(name)
        if media is None:
            return _error(404, f"no static file {name!r}", "not_found")
        return Response((rendering.STATIC / name).read_bytes(), media_type=media, headers={"Cache-Control": "no-cache"})

    @app.get("/api/state")
    def state() -> dict[str, Any]:
        return answer()

    @app.get("/api/metrics")
    def metrics() -> dict[str, Any]:
        return rendering.metrics(studio)

    @app.post("/api/claim")
    async def claim(request: Request) -> dict[str, Any]:
        data = await body(request)
        tab = data.get("tab")
        if not isinstance(tab, str) or not tab:
            raise InputError("tab: a tab id is required")
        return studio.claim(tab, bool(data.get("take_over")))

    @app.post("/api/edit")
    async def edit(request: Request) -> dict[str, Any]:
        data = await body(request)
        editing(data)
        # A cell edited in place keeps its table (the person is typing in it); the page asks for it once they leave.
        in_place = data.get("op") in IN_PLACE_EDITS
        return answer(studio.edit(data), skip=("editor",) if in_place else ())

    @app.post("/api/yaml")
    async def yaml_text(request: Request) -> dict[str, Any]:
        data = await body(request)
        editing(data)
        text = data.get("text")
        if not isinstance(text, str):
            raise InputError("text: the system's YAML is required")
        return answer(studio.set_text(text))

    @app.post("/api/undo")
    async def undo(request: Request) -> dict[str, Any]:
        editing(await body(request))
        return answer(message="" if studio.undo() else "nothing to undo")

    @app.post("/api/redo")
    async def redo(request: Request) -> dict[str, Any]:
        editing(await body(request))
        return answer(message="" if studio.redo() else "nothing to redo")

    @app.get("/api/diff")
    def diff() -> dict[str, Any]:
        return {"diff": studio.diff(), "fingerprint": studio.system.fingerprint}

    @app.get("/api/cell")
    def cell(request: Request) -> dict[str, Any]:
        params = request.query_params
        result = studio.cell(params.get("true", ""), params.get("predicted", ""), params.get("method") or None)
        return {**result, "html": rendering.cell_html(result, thumbs)}

    @app.post("/api/propose/induce")
    async def induce(request: Request) -> dict[str, Any]:
        editing(await body(request))
        proposal = studio.propose_induce()
        return answer(message=f"induce proposes {len(proposal.changes)} change(s)", proposal=proposal.to_dict())

    @app.post("/api/propose/llm")
    async def llm(request: Request) -> dict[str, Any]:
        data = await body(request)
        editing(data)
        notes = data.get("notes", "")
        if not isinstance(notes, str):
            raise InputError("notes: text is expected")
        proposal = await run_in_threadpool(studio.propose_llm, notes)  # the LLM may take minutes; other requests go on
        count = len(proposal.changes)
        return answer(message=f"the LLM proposes {count} change(s)" if count else "the LLM proposes no change", proposal=proposal.to_dict())

    @app.post("/api/proposal/preview")
    async def preview(request: Request) -> dict[str, Any]:
        data = await body(request)
        result = studio.preview(str(data.get("id", "")), _change_numbers(data))
        if result.get("after"):  # formatted here, as the page formats every other figure
            result["line"] = ", ".join(f"{m} {rendering.pct(v)} → {rendering.pct(result['after'].get(m))}" for m, v in result["before"].items())
        return result

    @app.post("/api/propose/optimize")
    async def optimize(request: Request) -> dict[str, Any]:
        data = await body(request)
        editing(data)
        budget = data.get("max_candidates", OPTIMIZE_CANDIDATES)
        seconds = data.get("max_seconds", OPTIMIZE_SECONDS)
        if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= 100_000:
            raise InputError("max_candidates: a whole number from 1 to 100000")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 3600:
            raise InputError("max_seconds: a number of seconds in (0, 3600]")
        run = studio.start_optimize(budget, float(seconds))
        return answer(message="optimize started", optimization=run.to_dict())

    @app.get("/api/optimize")
    def optimize_progress() -> dict[str, Any]:
        run = studio.optimization
        return {"optimization": None if run is None else run.to_dict()}

    @app.post("/api/optimize/stop")
    async def optimize_stop(request: Request) -> dict[str, Any]:
        editing(await body(request))
        studio.stop_optimize()
        run = studio.optimization
        return {"optimization": None if run is None else run.to_dict()}

    @app.post("/api/proposal/accept")
    async def accept(request: Request) -> dict[str, Any]:
        data = await body(request)
        editing(data)
        accepted = _change_numbers(data)
        outcome = studio.accept(str(data.get("id", "")), accepted)
        return answer(outcome, message=f"accepted {len(accepted)} change(s)" if outcome.ok else "")

    @app.post("/api/proposal/reject")
    async def reject(request: Request) -> dict[str, Any]:
        editing(await body(request))
        studio.reject()
        return answer(message="proposal rejected")

    @app.post("/api/save")
    async def save(request: Request) -> dict[str, Any]:
        data = await body(request)
        editing(data)
        try:
            result = studio.save(confirm=data.get("confirm") is True)
        except ConflictError as exc:  # not a failure: the page asks the person, then saves with confirm
            if data.get("confirm") is True:
                raise
            return {"ok": False, "confirm": str(exc), "saved": None}
        message = result["message"] + (f"; the previous version is kept as {result['backup']}" if result.get("backup") else "")
        return answer(message=message, saved=result)

    @app.post("/api/save_as")
    async def save_as(request: Request) -> dict[str, Any]:
        data = await body(request)
        editing(data)
        target = data.get("path")
        if not isinstance(target, str):
            raise InputError("path: the file to save as is required")
        try:
            result = studio.save_as(target, confirm=data.get("confirm") is True)
        except ConflictError as exc:  # the file exists: the page asks the person first
            if data.get("confirm") is True:
                raise
            return {"ok": False, "confirm": str(exc), "saved": None, "path": target}
        message = result["message"] + (f"; the previous version is kept as {result['backup']}" if result.get("backup") else "")
        return answer(message=message + f"; now editing {result['path']}", saved=result)

    return app


def _change_numbers(data: dict[str, Any]) -> list[int]:
    accepted = data.get("accepted")
    if not isinstance(accepted, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in accepted):
        raise InputError("accepted: a list of change numbers is required")
    return accepted


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a port in use is bad input (exit 2), named with the flag to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart may reuse a port in TIME_WAIT, never a listened one
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise InputError(f"--port {port}: already in use on {host}; choose another port (--port 0 picks a free one)") from exc
        raise InputError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from exc
    return sock


def run(app: FastAPI, sock: socket.socket, log_level: str = "warning") -> None:
    """Serve ``app`` on an already bound socket until interrupted."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off"))
    server.run(sockets=[sock])


class Background:
    """The app served from a thread on a bound socket (a notebook, a test, a benchmark); ``url`` once entered.

    ``with Background(app) as url: ...`` stops the server when the block ends.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.sock = bind(host, port)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        host, port = self.sock.getsockname()[:2]
        self.url = f"http://{host}:{port}/"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the studio server did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


__all__ = ["Background", "bind", "create_app", "is_loopback", "run"]
