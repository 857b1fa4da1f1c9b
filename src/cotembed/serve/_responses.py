"""JSON responses rendered by orjson: the service's one answer encoding.

A classification answer is a few hundred floats per input; ``json.dumps`` spends more
server CPU on it than the scoring does, and at one image per request that is most of
what a request costs. orjson writes the same JSON several times faster and takes numpy
arrays and scalars as they are. The service's answers stay strict JSON: a number that is
not finite is refused here (a 500 naming it) instead of being written as ``null``.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from starlette.responses import JSONResponse as StarletteJSONResponse

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _first_non_finite(content: Any, path: str = "") -> str | None:
    """Where in ``content`` a NaN or infinity is (only looked for when orjson wrote a ``null`` somewhere)."""
    if isinstance(content, float):
        return None if math.isfinite(content) else (path or "the answer")
    if isinstance(content, dict):
        items: Any = content.items()
    elif isinstance(content, (list, tuple)):
        items = enumerate(content)
    else:
        try:
            import numpy as np

            if isinstance(content, (np.ndarray, np.floating)) and not bool(np.all(np.isfinite(content))):
                return path or "the answer"
        except ImportError:  # pragma: no cover - numpy is a dependency
            pass
        return None
    for key, value in items:
        where = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)
        found = _first_non_finite(value, where)
        if found is not None:
            return found
    return None


def dumps(content: Any) -> bytes:
    """Strict JSON bytes of ``content``: NaN and infinities raise ``ValueError`` (orjson alone writes them as null)."""
    data = orjson.dumps(content, option=_OPTIONS)
    if b"null" in data:  # cheap test first: a real None, or a non-finite number orjson turned into one
        where = _first_non_finite(content)
        if where is not None:
            raise ValueError(f"{where}: a number that is not finite cannot be written as JSON")
    return data


class JSONResponse(StarletteJSONResponse):
    """Starlette's ``JSONResponse``, rendered by orjson (numpy values allowed)."""

    def render(self, content: Any) -> bytes:
        return dumps(content)
