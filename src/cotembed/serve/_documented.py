"""The error answers of every route, written into the OpenAPI schema.

A client generated from ``/openapi.json`` (or a fuzzer holding the service to it) must find
every status the service can answer, with the one error body they all share
(``{"error": {"message", "type", "param"}}``) and the headers that go with them
(``Retry-After`` on 429 and 503, ``WWW-Authenticate`` on 401). FastAPI alone documents only
its own 422 shape, which is not the one this service sends.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "param"], "additionalProperties": True,
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "the field at fault, if one is"},
                       "problems": {"type": "array", "items": {"type": "string"}}}}},
}
"""What every error answer holds (``problems``: each problem of an invalid system)."""

_RETRY = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}}
_STATUS: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("the body cannot be read", {}),
    401: ("missing or wrong API key", {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}),
    409: ("the name is taken by a different system, or the service runs several worker processes (registrations are "
          "given at start)", {}),
    413: ("the body, an image's pixels, or a system's prompts or classes are above the service's limits", {}),
    415: ("the Content-Type is not one this route reads", {}),
    422: ("invalid request: the message names the field (param)", {}),
    429: ("the model's queue is full", _RETRY),
    500: ("the service failed; see its log", {}),
    503: ("the system is still being prepared, or the service is shutting down", _RETRY),
}

_BODY = (400, 413, 422, 500)
_MODEL = (*_BODY, 429, 503)
ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("GET", "/health"): (500,),
    ("GET", "/metrics"): (500,),
    ("GET", "/v1/models"): (500,),
    ("GET", "/v1/systems"): (500,),
    ("GET", "/v1/systems/{name}"): (422, 500),
    ("POST", "/v1/systems"): (*_BODY, 409, 503),
    ("POST", "/v1/classify"): _MODEL,
    ("POST", "/v1/classify/upload"): (*_MODEL, 415),
    ("POST", "/v1/classify/image"): (*_MODEL, 415),
    ("POST", "/v1/explain"): _MODEL,
    ("POST", "/v1/systems/{name}/examples"): (*_MODEL, 409),
    ("DELETE", "/v1/systems/{name}/examples"): (*_BODY, 409),
    ("POST", "/v1/embeddings"): _MODEL,
}
"""Per route, the error statuses it can answer (401 is added where the API key is checked); a route
not listed here gets those of a route with a body."""


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, headers = _STATUS[status]
        entry: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
        if headers:
            entry["headers"] = headers
        out[status] = entry
    return out


def document_errors(app: FastAPI, authenticated: bool) -> None:
    """Add the error answers to every API route of ``app`` (before its schema is first built)."""
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        for method in route.methods or ():
            statuses = ERRORS.get((method, route.path), _BODY)
            if authenticated and route.path != "/health":
                statuses = (*statuses, 401)
            route.responses = {**error_responses(*statuses), **route.responses}
