"""A real OpenAI-compatible chat-completions server on 127.0.0.1, for tests: it serves a
queue of scripted replies in order and records every request it receives.

    with ScriptedChatServer([error(429, retry_after=0), reply('{"groups": ...}')]) as server:
        settings = LLMSettings(base_url=server.base_url, model="test-model")
        ...
        assert "missing group" in server.requests[1].last_user

Only ``POST {base_url}/chat/completions`` is served; other paths answer 404 in OpenAI's
error shape. When the script runs out the server answers 500 ``script exhausted``, so a
test notices requests it did not expect. A reply with ``delay_s`` waits before answering
(for timeouts); closing the server ends such waits at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
"""Unset these in tests (monkeypatch.delenv) so requests to 127.0.0.1 go straight to the server."""

DEFAULT_MODEL = "scripted-model"


@dataclass(frozen=True)
class Scripted:
    """One scripted HTTP response."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0
    content_type: str = "application/json"


def reply(content: str | None, *, finish_reason: str | None = "stop", model: str = DEFAULT_MODEL, refusal: str | None = None,
          delay_s: float = 0.0, usage: dict[str, int] | None = None) -> Scripted:
    """A successful chat completion whose assistant message is ``content``."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if refusal is not None:
        message["refusal"] = refusal
    payload = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
    }
    return Scripted(200, json.dumps(payload).encode(), delay_s=delay_s)


def error(status: int, message: str = "scripted error", *, retry_after: str | float | None = None, code: str | None = None) -> Scripted:
    """An error in OpenAI's shape (``{"error": {"message", "type", "code"}}``), optionally with Retry-After."""
    payload = {"error": {"message": message, "type": "scripted_error", "code": code}}
    headers = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
    return Scripted(status, json.dumps(payload).encode(), headers)


def raw(body: str | bytes, status: int = 200, content_type: str = "text/html") -> Scripted:
    """Any body at all (a proxy's HTML page, truncated JSON, ...)."""
    return Scripted(status, body.encode() if isinstance(body, str) else body, content_type=content_type)


@dataclass(frozen=True)
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes = field(repr=False)

    @property
    def messages(self) -> list[dict[str, str]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []

    @property
    def last_user(self) -> str:
        """The text of the last user message (the repair prompt in a repair round)."""
        return next((m.get("content", "") for m in reversed(self.messages) if m.get("role") == "user"), "")


class ScriptedChatServer:
    """See the module docstring. ``base_url`` ends in ``/v1`` like OpenAI's."""

    def __init__(self, script: Iterable[Scripted] = ()) -> None:
        self.requests: list[Recorded] = []
        self._script: deque[Scripted] = deque(script)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.block_on_close = False  # a handler still waiting on a slow reply must not hold up close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def remaining(self) -> int:
        """Scripted replies not served yet."""
        with self._lock:
            return len(self._script)

    def push(self, *items: Scripted) -> None:
        with self._lock:
            self._script.extend(items)

    def start(self) -> "ScriptedChatServer":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> "ScriptedChatServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _next(self, request: Recorded) -> Scripted:
        with self._lock:
            self.requests.append(request)
            if not request.path.rstrip("/").endswith("/v1/chat/completions"):
                return error(404, f"no route {request.path}", code="not_found")
            if not self._script:
                return error(500, "script exhausted: the test did not expect this request")
            return self._script.popleft()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(data) if data else None
                except ValueError:
                    body = None
                headers = {k.lower(): v for k, v in self.headers.items()}
                scripted = server._next(Recorded("POST", self.path, headers, body, data))
                if scripted.delay_s and server._closing.wait(scripted.delay_s):
                    return
                try:
                    self.send_response(scripted.status)
                    self.send_header("Content-Type", scripted.content_type)
                    self.send_header("Content-Length", str(len(scripted.body)))
                    for key, value in scripted.headers:
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(scripted.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        return Handler


__all__ = ["DEFAULT_MODEL", "PROXY_VARS", "Recorded", "Scripted", "ScriptedChatServer", "error", "raw", "reply"]
