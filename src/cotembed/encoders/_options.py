"""Encoder options: each backend lists the ones it accepts, and every value is checked
before any model is touched, so ``batchsize=2`` or ``device=""`` fail at once with a
message naming the option instead of being silently ignored.

A value of ``None`` means "not given": the backend's default applies. That lets a caller
forward optional flags (``batch_size=args.batch_size``) without filtering them first.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable, Mapping, Sequence

from cotembed.errors import InputError


def _positive_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return "a positive integer"
    return None


def _non_negative_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return "a non-negative integer"
    return None


def _number(minimum: float, inclusive: bool) -> Callable[[Any], str | None]:
    need = f"a finite number {'>=' if inclusive else '>'} {minimum:g}"

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return need
        return None if (value >= minimum if inclusive else value > minimum) else need

    return check


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "a non-empty string"


CHECKS: dict[str, Callable[[Any], str | None]] = {
    "batch_size": _positive_int,
    "device": _text,  # torch backends also check it against the hardware when loading
    "task": _text,
    "truncate_dim": _positive_int,
    "dimensions": _positive_int,
    "base_url": _text,
    "api_key": _text,
    "max_attempts": _positive_int,
    "backoff_s": _number(0.0, inclusive=True),
    "timeout_s": _number(0.0, inclusive=False),
    "logit_scale": _number(0.0, inclusive=False),
    "max_image_side": _non_negative_int,
    "image_format": _text,
    "threads": _positive_int,
    "tokenizer": _text,
    "pooling": _text,  # the onnx backend checks it against its list when loading
    "output": _text,
    "max_length": _positive_int,
}
"""Option name -> check returning what the value should be, or None when it is fine."""


def check_options(spec: str, accepted: Sequence[str], options: Mapping[str, Any]) -> dict[str, Any]:
    """The given options minus the ``None`` ones; unknown names and bad values are one InputError."""
    unknown = [name for name in options if name not in accepted]
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        message = f"unknown option(s) {names} for model {spec}; accepted: {', '.join(accepted) or 'none'}"
        hints = [f"{close[0]!r} for {name!r}" for name in unknown
                 if (close := difflib.get_close_matches(name, accepted, n=1, cutoff=0.6))]
        raise InputError(message + (f"; did you mean {', '.join(hints)}?" if hints else ""))
    given = {name: value for name, value in options.items() if value is not None}
    problems = []
    for name, value in given.items():
        check = CHECKS.get(name)
        need = check(value) if check else None
        if need:
            problems.append(f"{name}={value!r} must be {need}")
    if problems:
        raise InputError(f"invalid option(s) for model {spec}: {'; '.join(problems)}")
    return given


__all__ = ["CHECKS", "check_options"]
