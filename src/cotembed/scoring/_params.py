"""Declared parameters: one place that says what a configurable object accepts, and checks it.

In the spirit of scikit-learn's ``_parameter_constraints`` and ``validate_params``: a
method (or anything else configurable) lists its :class:`Param` declarations once,
and every front end derives from them (CLI flags, the service's request schema, the
settings a report records), so a parameter is never described twice and a typo such
as ``templtes`` is an error naming the accepted names instead of a silent no-op.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from cotembed.errors import InputError

_KINDS = ("float", "int", "bool", "str", "strings", "ints", "object")


@dataclass(frozen=True)
class Param:
    """One declared parameter: name, kind, allowed range, default and help.

    ``kind`` is one of ``float``, ``int``, ``bool``, ``str``, ``strings`` (a list of
    strings), ``ints`` (a list of whole numbers) or ``object`` (checked by ``check``
    only; never a CLI flag or JSON field). ``low``/``high`` bound numbers (and list
    items of ``ints``); ``low_open``/``high_open`` exclude the bound itself.
    ``check`` adds a rule of its own: it returns a problem (text) or None.
    """

    name: str
    kind: str
    default: Any = None
    help: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    optional: bool = False
    """None is accepted (and means "use the default behaviour", e.g. no budget)."""
    check: Callable[[Any], str | None] | None = None
    flag: str | None = None
    """The command-line flag (``--confidence``); None: not on the command line."""
    metavar: str | None = None
    parse: Callable[[str], Any] | str | None = None
    """Turns the flag's text into a value (e.g. reads a templates file): a function or its import
    string (``"module:function"``, so a front end's parser is named without importing it); default: ``kind``'s."""
    report: Callable[[Any], Any] | None = None
    """The value as a report records it (JSON-ready); default: the value itself."""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"parameter {self.name!r}: kind must be one of {', '.join(_KINDS)}, got {self.kind!r}")

    # --------------------------------------------------------------- checking
    def range_text(self) -> str:
        if self.low is None and self.high is None:
            return ""
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{left}{low}, {high}{right}"

    def _in_range(self, x: float) -> bool:
        if self.low is not None and (x < self.low or (self.low_open and x == self.low)):
            return False
        if self.high is not None and (x > self.high or (self.high_open and x == self.high)):
            return False
        return True

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or None when it is."""
        if value is None:
            return None if self.optional or self.default is None else "must be given"
        kind = self.kind
        where = self.range_text()
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                return f"must be a number{' in ' + where if where else ''}, got {value!r}"
            if not math.isfinite(float(value)) or not self._in_range(float(value)):
                return f"must be a finite number{' in ' + where if where else ''}, got {value!r}"
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not self._in_range(int(value)):
                return f"must be a whole number{' in ' + where if where else ''}, got {value!r}"
        elif kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                return f"must be true or false, got {value!r}"
        elif kind == "str":
            if not isinstance(value, str):
                return f"must be text, got {value!r}"
        elif kind in ("strings", "ints"):
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
                return f"must be a non-empty list, got {value!r}"
            if kind == "strings":
                bad = [v for v in value if not isinstance(v, str)]
                if bad:
                    return f"must be a list of texts; bad: {', '.join(map(repr, bad[:5]))}"
            else:
                bad = [v for v in value if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not self._in_range(int(v))]
                if bad:
                    return f"must be whole numbers{' in ' + where if where else ''}; bad: {', '.join(map(repr, bad[:5]))}"
        return self.check(value) if self.check is not None else None

    def normalise(self, value: Any) -> Any:
        """The checked value in its canonical Python form (tuples for lists, built-in numbers)."""
        if value is None:
            return None
        if self.kind == "float":
            return float(value)
        if self.kind == "int":
            return int(value)
        if self.kind == "bool":
            return bool(value)
        if self.kind == "strings":
            return tuple(dict.fromkeys(value))
        if self.kind == "ints":
            return tuple(dict.fromkeys(int(v) for v in value))
        return value

    def reported(self, value: Any) -> Any:
        if self.report is not None:
            return self.report(value)
        return list(value) if isinstance(value, tuple) else value

    # -------------------------------------------------------------- front ends
    def json_schema(self) -> dict[str, Any] | None:
        """The JSON-schema fragment of this parameter (None for ``object``: not settable over JSON)."""
        base: dict[str, Any]
        if self.kind == "object":
            return None
        if self.kind in ("float", "int"):
            base = {"type": "number" if self.kind == "float" else "integer"}
            if self.low is not None:
                base["exclusiveMinimum" if self.low_open else "minimum"] = self.low
            if self.high is not None:
                base["exclusiveMaximum" if self.high_open else "maximum"] = self.high
        elif self.kind == "bool":
            base = {"type": "boolean"}
        elif self.kind == "str":
            base = {"type": "string"}
        else:
            base = {"type": "array", "minItems": 1, "items": {"type": "string" if self.kind == "strings" else "integer"}}
        if self.optional:
            base = {"anyOf": [base, {"type": "null"}]}
        base["description"] = self.help
        if self.default is not None:
            base["default"] = self.reported(self.default)
        return base


def closest(name: str, accepted: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else empty."""
    match = difflib.get_close_matches(name, list(accepted), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def validate_params(params: Sequence[Param], given: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """Every declared parameter's value (given, else its default), checked.

    Unknown names and bad values are reported together, each naming ``owner`` and
    the parameter, with the accepted names and a "did you mean" for near misses.
    """
    declared = {p.name: p for p in params}
    problems = []
    for name in given:
        if name not in declared:
            accepted = ", ".join(declared) if declared else "none"
            problems.append(f"unknown parameter {name!r}{closest(str(name), list(declared))}; {owner} accepts: {accepted}")
    values: dict[str, Any] = {}
    for p in params:
        value = given.get(p.name, p.default)
        why = p.problem(value)
        if why is not None:
            problems.append(f"{p.name} {why}")
        else:
            values[p.name] = p.normalise(value)
    if problems:
        raise InputError(f"{owner}: " + "; ".join(problems))
    return values


def params_schema(params: Sequence[Param]) -> dict[str, Any]:
    """JSON-schema ``properties`` of the parameters settable over JSON."""
    return {p.name: schema for p in params if (schema := p.json_schema()) is not None}


__all__ = ["Param", "closest", "params_schema", "validate_params"]
