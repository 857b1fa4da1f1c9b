"""The service's one error shape: ``{"error": {"message", "type", "param"}}``.

Every failure a client can cause or meet (bad body, unknown model, too large, queue
full, missing key) is one of :mod:`cotembed.errors`' exceptions, whose ``http_status`` and
``error_type`` (a stable word a program can branch on) the service answers with; an
:class:`~cotembed.errors.ApiError` adds ``param``: where in the request the problem is
(``input[3].image``, ``labels[0]``), or null when it is the request as a whole.
"""

from __future__ import annotations

import re
from typing import Any

from cotembed.errors import (  # the constants stay importable here: the service's vocabulary
    AUTH,
    CONFLICT,
    INVALID,
    NOT_FOUND,
    QUEUE_FULL,
    SERVER,
    TOO_LARGE,
    TYPE_OF_STATUS,
    UNAVAILABLE,
    ApiError,
    CotembedError,
)

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


def body_of(exc: CotembedError) -> dict[str, Any]:
    """The error body for any of cotembed's exceptions: its ``error_type``, and for an
    :class:`~cotembed.errors.ApiError` its ``param`` and extra fields."""
    if isinstance(exc, ApiError):
        return error_body(exc.message, exc.error_type, exc.param, **exc.extra)
    return error_body(str(exc), exc.error_type)


def invalid(message: str, param: str | None = None, **extra: Any) -> ApiError:
    return ApiError(422, message, param, **extra)


def too_large(message: str, param: str | None = None) -> ApiError:
    return ApiError(413, message, param)


__all__ = ["AUTH", "CONFLICT", "INVALID", "NOT_FOUND", "QUEUE_FULL", "SERVER", "TOO_LARGE", "TYPE_OF_STATUS", "UNAVAILABLE", "ApiError",
           "body_of", "bounded", "error_body", "invalid", "too_large"]
