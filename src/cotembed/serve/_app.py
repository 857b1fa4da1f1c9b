"""The FastAPI application: routes, error bodies, metrics, lifespan.

``create_app(registry)`` serves an opened :class:`~cotembed.serve._registry.Registry`
(models loaded, systems registered). Routes:

* ``POST /v1/classify``: the Jina Classifier API shape (``model``, ``input``, ``labels``
  -> ``data[]`` of ``index, prediction, score, predictions``), plus ``system`` and
  ``method`` for chain-of-thought classification with a registered system;
* ``POST /v1/explain``: the ``cotembed explain`` JSON for one input;
* ``POST /v1/embeddings``: the OpenAI embeddings shape (texts, or Jina-style image objects);
* ``GET/POST /v1/systems``, ``GET /v1/systems/{name}``, ``GET /v1/models``;
* ``GET /health`` (no key), ``GET /metrics`` (Prometheus text), ``/docs`` (OpenAPI).

Every error is ``{"error": {"message", "type", "param"}}``. The lifespan starts the
batchers and, on shutdown (after uvicorn has let requests in flight finish), drains them.
"""

from __future__ import annotations

import asyncio
import base64
import re
import sys
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cotembed import __version__
from cotembed.cache import content_key
from cotembed.errors import ApiError, BatcherClosed, CotembedError, InputError, InputFailed, QueueFull
from cotembed.scoring import ScoringConfig, get_method, method_class
from cotembed.scoring._params import params_schema
from cotembed.serve._auth import require_api_key
from cotembed.serve._bodies import system_from_body
from cotembed.serve._decisions import DecisionFields, annotate, check_use, conformal_predictor, restricted_fit
from cotembed.serve._decisions import score as score_request
from cotembed.serve._documented import document_errors
from cotembed.serve._errors import body_of, error_body, invalid
from cotembed.serve._examples import ExamplesRequest, add_examples, fitted_scorer, refined_scorer, resolve_labels
from cotembed.serve._inputs import check_image, check_text, load_items
from cotembed.serve._limits import BodyLimit
from cotembed.serve._registry import RETRY_AFTER_S, Registry, ServedModel, SystemEntry, _options_key
from cotembed.serve._requests import TRANSDUCTIVE_HELP, ClassifyRequest, EmbeddingsRequest, ExplainRequest
from cotembed.serve._responses import JSONResponse
from cotembed.serve._scoring_batch import ScoreBatcher

CLASSIFY_EXAMPLE = {
    "object": "list", "model": "critters", "model_key": "critters:cbe796f82093", "method": "cot", "temperature": 65.46,
    "system": {"name": "critters", "fingerprint": "03b18d8a67d9b4a8"},
    "data": [{"object": "classification", "index": 0, "prediction": "Brazzik", "score": 0.26,
              "predictions": [{"label": "Brazzik", "score": 0.26}, {"label": "Cruvex", "score": 0.01}]}],
    "usage": {"total_tokens": 0},
}
"""The shape of a /v1/classify answer (``predictions`` lists every label, in label or class order)."""
# Routes that return large payloads build their JSONResponse directly: FastAPI would otherwise walk
# every number through its encoder and validate the dict again, which costs more than the scoring.


# ----------------------------------------------------------------------------- helpers
_TYPE_TAG = re.compile(r"^([a-z_]+\[.*\]|str|int|float|bool|list|dict|literal_error|function-\w+)$")


def _param(loc: tuple[Any, ...]) -> str | None:
    """Pydantic's error location as the client wrote it: ("body", "input", 3) -> "input[3]"."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not _TYPE_TAG.match(part):
            out += f".{part}" if out else part
    return out or None


def _flag(value: str | None, param: str) -> bool:
    """A form field's boolean: ``true`` or ``false`` (absent: false)."""
    if value is None or value.strip().lower() == "false":
        return False
    if value.strip().lower() == "true":
        return True
    raise invalid(f"{param}: give true or false, got {value[:40]!r}", param)


def _error_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def _check_count(values: list[Any], limit: int, field: str, what: str) -> None:
    if len(values) > limit:
        raise invalid(f"{len(values)} {what} in one request; the limit is {limit}", field)


def _labels(labels: list[str], limit: int) -> list[str]:
    _check_count(labels, limit, "labels", "labels")
    seen: set[str] = set()
    for j, label in enumerate(labels):
        if not label.strip():
            raise invalid(f"labels[{j}]: empty label", f"labels[{j}]")
        check_text(label, f"labels[{j}]")
        if label in seen:
            raise invalid(f"labels[{j}]: {label!r} is given twice", f"labels[{j}]")
        seen.add(label)
    return labels


def _method(name: str | None, default: str, params: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The method's name and the request's parameters as method options (checked against the declarations)."""
    name = name or default
    try:
        cls = method_class(name)
    except InputError as exc:
        raise invalid(str(exc), "method") from None
    settable = params_schema(cls.parameters)
    for key in params or {}:
        if key not in settable and key in {p.name for p in cls.parameters}:
            raise invalid(f"params.{key}: not settable in a request", f"params.{key}")
    try:
        method = get_method(name, **(params or {}))
    except InputError as exc:
        raise invalid(str(exc), "params") from None
    return name, {cls.option_prefix + key: method.params[key] for key in params or {}}


async def _embeddings(model: ServedModel, items: list[tuple[str, Any]], params: list[str]) -> np.ndarray:
    try:
        results = await model.embed(items)
    except InputFailed as exc:  # the model failed on this input alone: a bad input (422), else our fault (500)
        param, error = params[exc.position], exc.error
        if isinstance(error, (InputError, ValueError, UnicodeError)):
            raise invalid(f"{param}: cannot be encoded: {error}", param) from None
        raise ApiError(500, f"{param}: the model failed on this input ({type(error).__name__}); see the server's log", param) from None
    for param, result in zip(params, results):
        if isinstance(result, str):
            raise invalid(f"{param}: {result}", param)
    return np.stack(results).astype(np.float32, copy=False)


def _input_params(items: list[tuple[str, Any]], field: str = "input") -> list[str]:
    return [f"{field}[{i}]" + (".image" if kind == "image" else "") for i, (kind, _) in enumerate(items)]


def _rows(probs: np.ndarray, labels: list[str]) -> list[dict[str, Any]]:
    data = []
    for i, (row, best) in enumerate(zip(probs.tolist(), np.argmax(probs, axis=1).tolist())):  # Python floats in one call
        data.append({
            "object": "classification", "index": i, "prediction": labels[best], "score": row[best],
            "predictions": [{"label": label, "score": p} for label, p in zip(labels, row)],
        })
    return data


def _columns(entry: SystemEntry, labels: list[str]) -> list[int]:
    """The system's class indices that ``labels`` name (aliases allowed), in their order."""
    index = {c: n for n, c in enumerate(entry.system.class_names)}
    columns: list[int] = []
    for j, label in enumerate(labels):
        cls = entry.system.resolve_label(label)
        if cls is None:
            raise invalid(f"labels[{j}]: {label!r} is not a class (or alias) of system {entry.name!r}", f"labels[{j}]")
        if index[cls] in columns:
            raise invalid(f"labels[{j}]: {label!r} names class {cls!r} again", f"labels[{j}]")
        columns.append(index[cls])
    return columns


def _restrict(probs: np.ndarray, columns: list[int]) -> np.ndarray:
    """Probabilities over the classes ``columns``, renormalised."""
    sub = probs[:, columns].astype(np.float64)
    total = sub.sum(axis=1, keepdims=True)
    return np.where(total > 0, sub / np.where(total > 0, total, 1.0), 1.0 / len(columns))


class _Timing:
    """Records every answered request (route template, status, seconds) in the metrics, and counts
    it among the arrivals the batchers may wait for until it has queued its inputs."""

    def __init__(self, app: ASGIApp, registry: Registry):
        self.app = app
        self.metrics = registry.metrics
        self.arrivals = registry.arrivals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        arrival = self.arrivals.enter()  # on its way to a batcher until it submits or ends
        try:
            await self.app(scope, receive, record)
        finally:
            self.arrivals.leave(arrival)
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.request(route, status, time.perf_counter() - start)


# --------------------------------------------------------------------------------- app
def create_app(registry: Registry) -> FastAPI:
    """The service for an opened registry; the caller closes the registry after the server stops."""
    settings = registry.settings
    limits = settings.limits

    scoring_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cotembed-scoring")
    scoring = ScoreBatcher(scoring_thread)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry.start()
        try:
            yield
        finally:
            await registry.stop()  # uvicorn has let requests in flight finish; finish what they queued
            scoring_thread.shutdown(wait=True)
            batches = sum(m.batcher.batches for m in registry.models.values() if m.batcher)
            print(f"cotembed: service stopped after {batches} model batch(es)", file=sys.stderr, flush=True)

    app = FastAPI(title="cotembed", version=__version__, lifespan=lifespan, default_response_class=JSONResponse,
                  description="Chain-of-thought classification with frozen embedding models. "
                              "Send the API key as 'Authorization: Bearer <key>' on every route but /health.")
    app.state.scoring = scoring
    app.add_middleware(BodyLimit, max_body_bytes=limits.max_body_bytes)
    app.add_middleware(_Timing, registry=registry)
    auth = [Depends(require_api_key(settings.api_key))]

    def _one_process(what: str) -> None:
        """Registrations live in one worker's memory: with several workers, they are given at start only."""
        if settings.workers > 1:
            raise ApiError(409, f"this service runs {settings.workers} worker processes, each with its own memory: "
                                f"{what} would reach one of them only; give them at start (--system, --examples)", "body")

    # ------------------------------------------------------------------ errors
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = max(errors, key=lambda e: len(e.get("loc", ()))) if errors else {}
        if first.get("type") == "json_invalid":  # its location is a character position, not a field
            where = first.get("loc", ("body", "?"))[-1]
            reason = (first.get("ctx") or {}).get("error", "invalid JSON")
            return _error_response(422, error_body(f"the body is not valid JSON: {reason} at character {where}", "invalid_request_error"))
        param = _param(tuple(first.get("loc", ())))
        message = f"{param}: {first.get('msg', 'invalid')}" if param else str(first.get("msg", "invalid request body"))
        return _error_response(422, error_body(message, "invalid_request_error", param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_response(exc.status_code, body_of(ApiError(exc.status_code, str(exc.detail))), dict(exc.headers or {}))

    @app.exception_handler(QueueFull)
    async def _queue_full(request: Request, exc: QueueFull) -> JSONResponse:
        registry.metrics.reject("queue_full")
        return _error_response(exc.http_status, error_body(f"server busy: {exc}; retry shortly", exc.error_type), {"Retry-After": "1"})

    @app.exception_handler(BatcherClosed)
    async def _closed(request: Request, exc: BatcherClosed) -> JSONResponse:
        return _error_response(exc.http_status, body_of(exc), {"Retry-After": "5"})

    @app.exception_handler(CotembedError)
    async def _failure(request: Request, exc: CotembedError) -> JSONResponse:
        """Every other error of the tree: the status and type it declares (errors.py), shared with the CLI's exit codes."""
        return _error_response(exc.http_status, body_of(exc), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _error_response(500, error_body(f"internal error ({type(exc).__name__}); see the server's log", "server_error"))

    # ------------------------------------------------------------------ routes
    @app.get("/health", tags=["service"])
    async def health() -> dict[str, Any]:
        """Liveness and what is served; needs no key."""
        return {"status": "ok", "version": __version__, "models": list(registry.models), "systems": len(registry.systems)}

    @app.get("/metrics", tags=["service"], dependencies=auth, response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Prometheus text: requests, latency, batch sizes, cache hits, queue."""
        return PlainTextResponse(registry.metrics.render(), media_type=registry.metrics.CONTENT_TYPE)

    @app.get("/v1/models", tags=["models"], dependencies=auth)
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [m.describe() for m in registry.models.values()]}

    @app.post("/v1/classify", tags=["classify"], dependencies=auth, response_class=JSONResponse,
              responses={200: {"description": "one classification per input, in input order",
                               "content": {"application/json": {"example": CLASSIFY_EXAMPLE}}}})
    async def classify(body: ClassifyRequest) -> JSONResponse:
        """Classify texts or images: by ``labels`` alone (zero-shot baseline), or with a registered ``system``
        (chain of thought; ``method`` picks cot, hybrid, adaptive, ...)."""
        model = registry.model(body.model)
        _check_count(body.input, limits.max_inputs, "input", "inputs")
        task = _task(model, body.labels, body.system, body.method, body.params, body)
        _check_transductive(body.transductive, task[1])
        items = await load_items(body.input, model.modalities, model.name, limits.max_pixels, settings.urls)
        return await _classify(model, *task, items, _input_params(items), transductive=body.transductive)

    def _task(model: ServedModel, given_labels: list[str] | None, system: str | None, given_method: str | None,
              params: dict[str, Any] | None = None, decisions: DecisionFields | None = None
              ) -> tuple[list[str] | None, SystemEntry | None, str, dict[str, Any], DecisionFields]:
        """The labels, system, method and decision fields of a classify request, checked before any input is read."""
        decisions = decisions if decisions is not None else DecisionFields.model_validate({})
        labels = _labels(given_labels, limits.max_labels) if given_labels is not None else None
        entry = registry.system(system) if system is not None else None
        check_use(decisions, entry is not None, bool(labels))
        if entry is None:
            if given_method not in (None, "baseline") or params:
                raise invalid(f"method {given_method!r} needs a system: give 'system' (see GET /v1/systems), "
                              "or leave 'method' out for zero-shot classification by labels", "method")
            if not labels:
                raise invalid("give 'labels' to classify by, or a registered 'system'", "labels")
            return labels, None, "baseline", {}, decisions
        method, options = _method(given_method, "cot", params)
        return labels, entry, method, options, decisions

    async def _classify(model: ServedModel, labels: list[str] | None, entry: SystemEntry | None, method: str,
                        options: dict[str, Any], decisions: DecisionFields, items: list[tuple[str, Any]],
                        params: list[str], transductive: bool = False) -> JSONResponse:
        notes: list[str] = []
        predictor = None
        if entry is None:
            assert labels is not None
            x, vectors = await _embeddings(model, items, params), await model.label_vectors(labels)
            config = ScoringConfig(model.label_temperature)
            probs = get_method("baseline").probabilities(x @ vectors.T, config)
            names = labels
        else:
            scorer = await model.scorer(entry.system, method, options)
            if method_class(method).uses_examples:  # fitted on the system's examples for this model
                scorer = fitted_scorer(entry, model.key, scorer, method, _options_key(options))
            columns = _columns(entry, labels) if labels else None
            predictor = conformal_predictor(entry.conformal, model.key, method, decisions, transductive)
            x = await _embeddings(model, items, params)
            if transductive:
                scorer, notes = refined_scorer(scorer, method, x)
            config = scorer.config
            scored = await score_request(scoring, scorer, x, method, decisions)
            probs = scored.probabilities
            names = list(entry.system.class_names)
            if columns is not None and labels:
                probs, names = _restrict(probs, columns), labels
                scored = replace(scored, fit=restricted_fit(scorer, x, columns, probs, decisions.fit_score))
        payload: dict[str, Any] = {"object": "list", "model": model.name, "model_key": model.key, "method": method,
                                   "temperature": config.temperature}
        if entry is not None:
            payload["system"] = {"name": entry.name, "fingerprint": entry.system.fingerprint}
            if method_class(method).uses_examples:
                payload["examples"] = entry.examples[model.key].describe(entry.system.class_names)
            payload["transductive"] = transductive
            if transductive and notes:
                payload["notes"] = notes
        payload["data"] = _rows(probs, names)
        if entry is not None:
            payload.update(annotate(payload["data"], scored, names, decisions, bool(labels), predictor))
        payload["usage"] = {"total_tokens": 0}
        return JSONResponse(payload)

    def _check_transductive(transductive: bool, entry: SystemEntry | None) -> None:
        if transductive and entry is None:
            raise invalid("transductive needs a system: give 'system'", "transductive")

    def _image_model(ref: str | None) -> ServedModel:
        model = registry.model(ref)
        if "image" not in model.modalities:
            raise invalid(f"model {model.name} cannot encode image inputs (it takes: {', '.join(sorted(model.modalities))})", "model")
        return model

    @app.post("/v1/classify/upload", tags=["classify"], dependencies=auth, response_class=JSONResponse,
              openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                  "type": "object", "required": ["file"], "properties": {
                      "file": {"type": "array", "items": {"type": "string", "format": "binary"}, "description": "images, one part each"},
                      "labels": {"type": "array", "items": {"type": "string"}}, "system": {"type": "string"},
                      "method": {"type": "string"}, "model": {"type": "string"},
                      "transductive": {"type": "string", "enum": ["true", "false"], "description": TRANSDUCTIVE_HELP}}}}}}})
    async def classify_upload(request: Request) -> JSONResponse:
        """Classify images uploaded as ``multipart/form-data`` (``file`` parts, several allowed; ``labels`` parts,
        ``system``, ``method``, ``model``, ``transductive`` as in /v1/classify): no base64. The body cap applies while it streams in, and
        each image's pixels are checked from its header before it is decoded."""
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "multipart/form-data":
            raise ApiError(415, "send multipart/form-data with one 'file' part per image", "body")
        try:
            form = await request.form(max_files=limits.max_inputs, max_fields=limits.max_labels + 8)
        except StarletteHTTPException as exc:
            raise invalid(f"the multipart body cannot be read: {exc.detail}", "body") from None
        try:
            unknown = sorted(set(form.keys()) - {"file", "labels", "system", "method", "model", "transductive"})
            if unknown:
                raise invalid(f"unknown form field(s) {', '.join(map(repr, unknown))}", unknown[0])
            fields: dict[str, str | None] = {}
            for key in ("system", "method", "model", "transductive"):
                values = form.getlist(key)
                if len(values) > 1 or any(not isinstance(v, str) for v in values):
                    raise invalid(f"{key}: give it once, as a text field", key)
                fields[key] = values[0] if values else None  # type: ignore[assignment]
            labels = form.getlist("labels")
            if any(not isinstance(v, str) for v in labels):
                raise invalid("labels: give them as text fields", "labels")
            files = form.getlist("file")
            if not files:
                raise invalid("no 'file' part: send one per image", "file")
            _check_count(files, limits.max_inputs, "file", "files")
            transductive = _flag(fields["transductive"], "transductive")
            model = _image_model(fields["model"])
            task = _task(model, [str(v) for v in labels] if labels else None, fields["system"], fields["method"])
            _check_transductive(transductive, task[1])
            items, params = [], []
            for i, upload in enumerate(files):
                param = f"file[{i}]"
                if isinstance(upload, str):
                    raise invalid(f"{param}: a text field, not a file", param)
                data = await upload.read()
                if not data:
                    raise invalid(f"{param}: the image is empty", param)
                check_image(data, param, limits.max_pixels)
                items.append(("image", data))
                params.append(param)
        finally:
            await form.close()
        return await _classify(model, *task, items, params, transductive=transductive)

    @app.post("/v1/classify/image", tags=["classify"], dependencies=auth, response_class=JSONResponse,
              openapi_extra={"requestBody": {"required": True, "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}}})
    async def classify_image(request: Request, system: str | None = Query(None, description="a registered system"),
                             labels: list[str] | None = Query(None, description="candidate labels (repeat the parameter)"),
                             method: str | None = Query(None), model: str | None = Query(None),
                             transductive: bool = Query(False, description=TRANSDUCTIVE_HELP)) -> JSONResponse:
        """Classify one image sent as the raw body (``Content-Type: image/png``, ``image/jpeg``, ...), the fastest way to
        send one image; the other fields are query parameters."""
        if not request.headers.get("content-type", "").strip().lower().startswith("image/"):
            raise ApiError(415, "send the image as the body with an image/* Content-Type (image/png, image/jpeg, ...)", "body")
        served = _image_model(model)
        task = _task(served, labels, system, method)
        _check_transductive(transductive, task[1])
        data = await request.body()
        if not data:
            raise invalid("the image is empty", "body")
        check_image(data, "body", limits.max_pixels)
        return await _classify(served, *task, [("image", data)], ["body"], transductive=transductive)

    @app.post("/v1/explain", tags=["classify"], dependencies=auth, response_class=JSONResponse)
    async def explain(body: ExplainRequest) -> JSONResponse:
        """The ``cotembed explain --format json`` payload for one input: each question's answers and the top classes."""
        model = registry.model(body.model)
        entry = registry.system(body.system)
        method, options = _method(body.method, "cot", body.params)
        if body.top_k > limits.max_top_k:
            raise invalid(f"top_k {body.top_k} is above the limit of {limits.max_top_k}", "top_k")
        [(kind, data)] = await load_items([body.input], model.modalities, model.name, limits.max_pixels, settings.urls)
        source = data if kind == "text" else f"sha256:{content_key(data)}"
        scorer = await model.scorer(entry.system, method, options)  # its prompts embedded in turns first, so the explanation finds them
        if method_class(method).uses_examples:  # the method as fitted on the system's examples, for the explanation
            fitted = fitted_scorer(entry, model.key, scorer, method, _options_key(options)).method(method)
            options = {**options, fitted.option_prefix + "examples": fitted.params["examples"]}
        try:
            return JSONResponse(await model.explain(entry.system, method, kind, data, source, body.top_k, options))
        except InputError as exc:
            raise invalid(str(exc), "input") from None

    @app.post("/v1/embeddings", tags=["embeddings"], dependencies=auth, response_class=JSONResponse)
    async def embeddings(body: EmbeddingsRequest) -> JSONResponse:
        """OpenAI-compatible embeddings (unit vectors); images as Jina-style ``{"image": ...}`` objects."""
        model = registry.model(body.model)
        inputs = [body.input] if isinstance(body.input, str) else body.input
        if not inputs:
            raise invalid("input is empty", "input")
        _check_count(inputs, limits.max_inputs, "input", "inputs")
        dim = int(model.encoder.dim)
        if body.dimensions is not None and body.dimensions != dim:
            raise invalid(f"model {model.name} gives {dim}-dimensional embeddings; dimensions={body.dimensions} cannot be served", "dimensions")
        items = await load_items(inputs, model.modalities, model.name, limits.max_pixels, settings.urls)
        x = await _embeddings(model, items, _input_params(items))
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

        def encode(row: np.ndarray) -> Any:
            if body.encoding_format == "base64":
                return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
            return [float(v) for v in row]

        return JSONResponse({"object": "list", "model": model.name,
                             "data": [{"object": "embedding", "index": i, "embedding": encode(row)} for i, row in enumerate(x)],
                             "usage": {"prompt_tokens": 0, "total_tokens": 0}})

    @app.get("/v1/systems", tags=["systems"], dependencies=auth)
    async def list_systems() -> dict[str, Any]:
        return {"object": "list", "data": [e.describe() for e in registry.entries()]}

    @app.get("/v1/systems/{name}", tags=["systems"], dependencies=auth)
    async def get_system(name: str) -> dict[str, Any]:
        """One system, with its full definition (the canonical form ``cotembed`` writes) and its
        ``status`` (``preparing`` until its prompts are embedded)."""
        entry = registry.system(name, ready=False)
        return {**entry.describe(), "definition": entry.system.to_dict()}

    @app.post("/v1/systems/{name}/examples", tags=["systems"], dependencies=auth)
    async def add_system_examples(name: str, body: ExamplesRequest) -> JSONResponse:
        """Add labelled examples (texts or images, one label each) to a registered system, for one model: the
        few-shot methods (prototype, gda, fused) of /v1/classify are fitted on them. Repeat to add more; unknown
        labels are a 422 listing them unless ``ignore_unknown``."""
        _one_process("examples added over HTTP")
        entry = registry.system(name)
        model = registry.model(body.model)
        _check_count(body.input, limits.max_inputs, "input", "inputs")
        rows, classes = resolve_labels(body.labels, len(body.input), entry.system.resolve_label,
                                       entry.system.class_names, body.ignore_unknown)
        items = await load_items([body.input[j] for j in rows], model.modalities, model.name, limits.max_pixels, settings.urls)
        x = await _embeddings(model, items, [f"input[{j}]" for j in rows])
        support = add_examples(entry, model.key, x, classes)
        return JSONResponse({"system": entry.name, "model": model.name, "model_key": model.key,
                             "added": len(rows), "skipped": len(body.input) - len(rows),
                             **support.describe(entry.system.class_names)})

    @app.delete("/v1/systems/{name}/examples", tags=["systems"], dependencies=auth)
    async def clear_system_examples(name: str, model: str | None = Query(None)) -> dict[str, Any]:
        """Forget a system's examples for one model (default: the first)."""
        _one_process("examples cleared over HTTP")
        entry = registry.system(name)
        served = registry.model(model)
        removed = entry.examples.pop(served.key, None)
        return {"system": entry.name, "model": served.name, "removed": 0 if removed is None else int(len(removed.labels))}

    @app.post("/v1/systems", tags=["systems"], dependencies=auth, status_code=201,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/yaml": {"schema": {"type": "string"}},
                  "application/json": {"schema": {"type": "object"}}}}})
    async def register_system(request: Request, name: str | None = Query(None, description="name to register it under "
                              "(default: the system's own name, else its fingerprint)")) -> JSONResponse:
        """Register a system from a YAML or JSON body (``Content-Type: application/json`` parses strict JSON, anything else
        YAML, without anchors or aliases); invalid systems get a 422 listing every problem with its path, like
        ``cotembed validate``; more prompts or classes than the service's caps a 413. A large system is answered 202 while
        its prompts are embedded (requests for it get 503 with ``Retry-After`` until it is ready), then 201."""
        _one_process("a system registered over HTTP")
        raw = await request.body()
        if not raw.strip():
            raise invalid("empty body: send the system as YAML or JSON", "body")
        json_format = request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"
        system = await asyncio.to_thread(system_from_body, raw, json_format, limits)  # parsing 1 MB takes seconds
        entry, ready, created = registry.add(system, name)
        done, _ = await asyncio.wait({ready}, timeout=settings.register_wait_s)
        if not done:  # still embedding its prompts: it is admitted, requests for it get 503 until ready
            return JSONResponse(entry.describe(), status_code=202, headers={"Retry-After": str(RETRY_AFTER_S),
                                                                            "Location": f"/v1/systems/{entry.name}"})
        ready.result()  # a failure raises its error
        return JSONResponse(entry.describe(), status_code=201 if created else 200)

    document_errors(app, authenticated=bool(settings.api_key))
    return app
