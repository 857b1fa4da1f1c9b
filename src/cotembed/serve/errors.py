"""The service's one error shape: ``{"error": {"message", "type", "param"}}``.

Every failure a client can cause or meet (bad body, unknown model, too large, queue
full, missing key) is an :class:`ApiError` with an HTTP status, a stable ``type`` a
program can branch on, and ``param``: where in the request the problem is
(``input[3].image``, ``labels[0]``), or null when it is the request as a whole.
"""

from __future__ import annotations

import re
from typing import Any

INVALID = "invalid_request_error"
AUTH = "authentication_error"
TOO_LARGE = "payload_too_large"
QUEUE_FULL = "queue_full"
NOT_FOUND = "not_found"
CONFLICT = "conflict"
UNAVAILABLE = "service_unavailable"
SERVER = "server_error"

TYPE_OF_STATUS = {401: AUTH, 404: NOT_FOUND, 405: "method_not_allowed", 409: CONFLICT, 413: TOO_LARGE,
                  415: "unsupported_media_type", 422: INVALID, 429: QUEUE_FULL, 503: UNAVAILABLE}


MAX_QUOTED_CHARS = 120
"""A value a message quotes (a label, a text, a YAML scalar) is cut to this many characters."""
MAX_MESSAGE_CHARS = 2000
MAX_PROBLEMS = 50
_LONG = f"{{{MAX_QUOTED_CHARS + 1},}}"
_QUOTED = re.compile(r"""'(?:[^'\\]|\\.)%s'|"(?:[^"\\]|\\.)%s\"""".replace("%s", _LONG), re.DOTALL)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]}...[{len(text) - 2 * keep:,} characters cut]...{text[-keep:]}"


def bounded(message: str) -> str:
    """A message safe to send: quoted values and the whole cut to a few hundred characters
    (an error must not echo a megabyte the client sent), lone surrogates escaped (the body is UTF-8)."""
    message = _cut(message, 8 * MAX_MESSAGE_CHARS)  # bounds the pattern's work too
    message = _QUOTED.sub(lambda m: m.group(0)[0] + _cut(m.group(0)[1:-1], MAX_QUOTED_CHARS) + m.group(0)[-1], message)
    message = _cut(message, MAX_MESSAGE_CHARS)
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def error_body(message: str, type: str, param: str | None = None, **extra: Any) -> dict[str, Any]:
    problems = extra.get("problems")
    if isinstance(problems, list):
        shown = [bounded(str(p)) for p in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - MAX_PROBLEMS:,} more")
        extra["problems"] = shown
    return {"error": {"message": bounded(message), "type": type, "param": param and bounded(param), **extra}}


class ApiError(Exception):
    """A failure answered with ``status`` and :func:`error_body`; ``extra`` adds fields
    (a system's validation ``problems``) and ``headers`` response headers."""

    def __init__(self, status: int, message: str, param: str | None = None, *, type: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.type = type or TYPE_OF_STATUS.get(status, SERVER if status >= 500 else INVALID)
        self.headers = headers
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, **self.extra)


def invalid(message: str, param: str | None = None, **extra: Any) -> ApiError:
    return ApiError(422, message, param, **extra)


def too_large(message: str, param: str | None = None) -> ApiError:
    return ApiError(413, message, param)
