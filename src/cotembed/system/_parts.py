"""The parts of a system: groups (questions), rules (each class's answers) and the checks of their fields.

Every other module of the package builds on these; they import nothing from it.
The field checks live here because a :class:`Group` validates itself on
construction. ``shown`` and ``listing`` quote user values in error messages,
never at more than a few hundred characters (a hostile file can hold megabytes).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import reprlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from cotembed.errors import InputError, SystemValidationError

GROUP_KEYS = ("groups", "classification_groups", "classification_cot")
RULE_KEYS = ("rules", "pokemon_rules")

Row = tuple[tuple[int, ...], ...]
"""One class's rule: for each group (in the system's order) the sorted option indices it accepts."""

OptionRef = int | str
"""An option named by its index in the group or by its text."""

# ---------------------------------------------------------------------- groups
@dataclass(frozen=True)
class Group:
    """One question: a prompt template with a single ``{}`` and its answer options.

    ``none_option`` (optional) names one of the options as "none of these": no class
    may accept it, so the answer mass it draws counts against every class (their fit
    scores drop and abstention can catch inputs no class describes).

    Validated on construction (a list of options becomes a tuple, an integer
    weight a float), so every Group that exists can be compiled.
    """

    name: str
    prompt: str
    options: tuple[str, ...]
    weight: float = 1.0
    description: str = ""
    none_option: str | None = None

    def __post_init__(self) -> None:
        problems = group_problems(self.name, self.prompt, self.options, self.weight, self.description, self.none_option)
        if problems:
            raise SystemValidationError(f"group {shown(self.name)}", problems)
        # Normalise once (a list of options becomes a tuple, an integer weight a float); frozen
        # forbids setattr, so the values go into the instance's __dict__ directly.
        self.__dict__.update(options=tuple(self.options), weight=float(self.weight))

    @property
    def none_index(self) -> int | None:
        """Index of the "none of these" option, None when the group has none."""
        return None if self.none_option is None else self.options.index(self.none_option)

    def prompts(self) -> list[str]:
        return [self.prompt.replace("{}", option, 1) for option in self.options]

    def option_index(self, option: OptionRef) -> int:
        """Index of an option given by index or text; InputError naming it when it is not one."""
        index = self._find(option)
        if index is None:
            raise InputError(f"group {shown(self.name)}: {self._unknown(option)}")
        return index

    def _find(self, option: Any) -> int | None:
        if isinstance(option, bool):
            return None
        if isinstance(option, int):
            return option if 0 <= option < len(self.options) else None
        try:
            return self.options.index(option)
        except ValueError:
            return None

    def _unknown(self, option: Any) -> str:
        if isinstance(option, bool) or not isinstance(option, (int, str)):
            return f"expected an option index or text, got {shown(option)}"
        if isinstance(option, int):
            return f"unknown option {option} (the group has {len(self.options)} options)"
        return f"unknown option {shown(option)} (options are: {listing(self.options)})"

    def _with(self, **changes: Any) -> "Group":
        """A copy with some fields changed, validated like any new Group (cheap: one group)."""
        return dataclasses.replace(self, **changes)


def trusted_group(name: str, prompt: str, options: tuple[str, ...], weight: float, description: str,
                  none_option: str | None = None) -> Group:
    """A Group whose fields were just validated: skip checking them a second time."""
    group = object.__new__(Group)
    group.__dict__.update(name=name, prompt=prompt, options=options, weight=float(weight), description=description,
                          none_option=none_option)
    return group


# ----------------------------------------------------------------------- rules
class Rule(Mapping[str, tuple[int, ...]]):
    """One class's accepted options per group, read-only: ``rule[group] -> (index, ...)``.

    A view over :attr:`row` (the indices, in the system's group order) and a
    group-name index shared by every rule of the system, so a 5,000-class
    system does not hold 5,000 dicts.
    """

    __slots__ = ("_index", "row")

    def __init__(self, index: Mapping[str, int], row: Row):
        self._index = index
        self.row = row

    def __getitem__(self, group: str) -> tuple[int, ...]:
        return self.row[self._index[group]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self.row)

    def __contains__(self, group: object) -> bool:
        return group in self._index

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Rule) and other._index is self._index:
            return self.row == other.row
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self.items()))

    def __repr__(self) -> str:
        return f"Rule({dict(self.items())!r})"


def row_of(rule: Mapping[str, tuple[int, ...]]) -> Row:
    return rule.row  # type: ignore[attr-defined,no-any-return]


QUOTE_LIMIT = 200
"""Longest quotation of a value in an error message: a huge value is cut, not echoed whole."""

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple = 3, 8, 8, 8
_REPR.maxset = _REPR.maxfrozenset = _REPR.maxdeque = 8
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = QUOTE_LIMIT


def shown(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for an error message, at most ``limit`` characters (cut with an ellipsis).

    Strings and numbers keep their exact repr when short; collections are summarised
    by :mod:`reprlib` first, so quoting a huge value costs little.
    """
    if value.__class__ in (str, int, float, bool) or value is None:
        text = repr(value) if value.__class__ is not int or value.bit_length() < 4096 else f"<{value.bit_length()}-bit integer>"
        if value.__class__ is str and len(value) > limit:
            return repr(value[:limit]) + f"... ({len(value):,} characters)"
    else:
        text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


PROBLEM_LIMIT = 1_000
"""Longest line of an error message: a path naming a huge class or group name is cut too."""


def bounded(problems: Iterable[str], limit: int = PROBLEM_LIMIT) -> list[str]:
    """Problem lines cut to ``limit`` characters each, for an error message."""
    return [p if len(p) <= limit else p[:limit] + f"... ({len(p):,} characters)" for p in problems]


def listing(names: Iterable[Any], limit: int = 12) -> str:
    items = list(names)
    texts = (str(n) for n in items[:limit])
    shown = ", ".join(text if len(text) <= 80 else text[:80] + "..." for text in texts)
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")



SCALE_RANGE = (1e-30, 1e30)
"""Weights and temperatures outside this range would overflow or vanish in float32 scores."""


def positive_number(value: Any, path: str, problems: list[str]) -> float | None:
    """A weight or temperature as a float; None (and a problem naming ``path``) when it is unusable."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        problems.append(f"{path}: must be a number, got {shown(value)}")
        return None
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not (number > 0 and math.isfinite(number)):
        problems.append(f"{path}: must be a positive finite number, got {shown(value)}")
        return None
    low, high = SCALE_RANGE
    if not low <= number <= high:
        problems.append(f"{path}: must be between {low:g} and {high:g} (scores are float32), got {shown(value)}")
        return None
    return number


def check_template(prompt: Any, path: str, problems: list[str]) -> bool:
    if not isinstance(prompt, str):
        problems.append(f"{path}: must be a string with one '{{}}', got {shown(prompt)}")
        return False
    count = prompt.count("{}")
    if count != 1:
        problems.append(f"{path}: prompt must contain exactly one '{{}}' (found {count}): {shown(prompt)}")
        return False
    return True


def group_problems(name: Any, prompt: Any, options: Any, weight: Any, description: Any, none_option: Any = None) -> list[str]:
    """Every problem of one group's fields, each named by its path (``groups.<name>.<field>``)."""
    problems: list[str] = []
    if not isinstance(name, str) or not name.strip():
        problems.append(f"groups: a group name must be a non-empty string, got {shown(name)}")
    path = f"groups.{name}"
    check_template(prompt, f"{path}.prompt", problems)
    if not isinstance(options, (list, tuple)) or not options:
        problems.append(f"{path}.options: must be a non-empty list")
    else:
        seen: dict[str, int] = {}
        for i, opt in enumerate(options):
            if not isinstance(opt, str) or not opt.strip():
                problems.append(f"{path}.options[{i}]: option must be a non-empty string, got {shown(opt)}")
            elif opt in seen:
                problems.append(f"{path}.options[{i}]: duplicate option {shown(opt)} (same as options[{seen[opt]}])")
            else:
                seen[opt] = i
    positive_number(weight, f"{path}.weight", problems)
    if not isinstance(description, str):
        problems.append(f"{path}.description: must be a string, got {shown(description)}")
    if none_option is not None and (not isinstance(none_option, str) or not isinstance(options, (list, tuple))
                                    or none_option not in options):
        problems.append(f"{path}.none_option: must be one of the group's options (the one no class uses), "
                        f"got {shown(none_option)}")
    return problems


def none_option_problems(groups: Iterable[Group], rules: Iterable[tuple[str, Row]]) -> list[str]:
    """A class that accepts its group's "none of these" option, named by its path."""
    marked = [(g, i, g.none_index) for i, g in enumerate(groups) if g.none_option is not None]
    if not marked:
        return []
    return [f"rules.{cls_name}.{g.name}: accepts {shown(g.none_option)}, the group's none_option (groups.{g.name}.none_option), "
            "which no class may use" for cls_name, row in rules for g, i, none in marked if none in row[i]]
