"""Edits: small, frozen, replayable changes to a :class:`~cotembed.system.System`.

The optimiser never mutates a system; it proposes edits. An edit is a frozen
dataclass that knows how to apply itself (returning a new, validated system, or
raising :class:`~cotembed.errors.InputError` when it does not fit), how to say what
it does in one line, and how to write itself as JSON. The search history stores
``edit.to_dict()`` for every candidate, so a run can be read (and replayed with
:func:`edit_from_dict`) without the code that proposed it.

Options are named by their text, not their index: "reword colour 'crimson' ->
'scarlet'" still reads right after other edits moved the indices.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from cotembed.errors import InputError, SystemValidationError
from cotembed.system import Group, System


class Edit:
    """Base of every edit kind: ``apply``, ``describe`` and a JSON form."""

    kind: ClassVar[str] = ""

    def apply(self, system: System) -> System:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[f.name] = _jsonable(getattr(self, f.name))
        return out


EDITS: dict[str, type[Edit]] = {}


def register(cls: type[Edit]) -> type[Edit]:
    """Class decorator: one entry per edit kind, so :func:`edit_from_dict` needs no if-chain."""
    if not cls.kind or cls.kind in EDITS:
        raise ValueError(f"edit kind {cls.kind!r} is empty or already registered")
    EDITS[cls.kind] = cls
    return cls


def _jsonable(value: Any) -> Any:
    if isinstance(value, Edit):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _quoted(options: Sequence[str]) -> str:
    return " | ".join(repr(o) for o in options)


# ------------------------------------------------------------------ options
@register
@dataclass(frozen=True)
class RewordOption(Edit):
    """Give one option new words; every rule that accepted it still does."""

    kind: ClassVar[str] = "reword"
    group: str
    option: str
    text: str

    def apply(self, system: System) -> System:
        return system.replace_option(self.group, self.option, self.text)

    def describe(self) -> str:
        return f"reword {self.group}: {self.option!r} -> {self.text!r}"


@register
@dataclass(frozen=True)
class RemoveOption(Edit):
    """Drop an option that no class needs (fewer prompts, one less distractor)."""

    kind: ClassVar[str] = "remove-option"
    group: str
    option: str

    def apply(self, system: System) -> System:
        return system.remove_option(self.group, self.option)

    def describe(self) -> str:
        return f"remove {self.group}: {self.option!r}"


@register
@dataclass(frozen=True)
class MergeOptions(Edit):
    """Fold ``drop`` into ``keep``: classes that accepted ``drop`` accept ``keep``, and ``drop`` goes.

    For two options the model cannot tell apart: their softmax splits one answer between them.
    """

    kind: ClassVar[str] = "merge-options"
    group: str
    keep: str
    drop: str

    def apply(self, system: System) -> System:
        group = _group(system, self.group)
        keep, drop = group.option_index(self.keep), group.option_index(self.drop)
        if keep == drop:
            raise InputError(f"merge-options {self.group}: cannot merge {self.keep!r} into itself")
        changes = {}
        for cls_name, rule in system.rules.items():
            chosen = rule[self.group]
            if drop in chosen:
                changes[cls_name] = {self.group: sorted({keep, *chosen} - {drop})}
        merged = system.with_rules(changes) if changes else system
        return merged.remove_option(self.group, self.drop)

    def describe(self) -> str:
        return f"merge {self.group}: {self.drop!r} into {self.keep!r}"


# -------------------------------------------------------------------- rules
@register
@dataclass(frozen=True)
class SetRules(Edit):
    """Set which option(s) some classes accept in some groups: ``((class, group, (option, ...)), ...)``."""

    kind: ClassVar[str] = "set-rules"
    rules: tuple[tuple[str, str, tuple[str, ...]], ...]
    note: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple((str(c), str(g), tuple(o)) for c, g, o in self.rules))

    def apply(self, system: System) -> System:
        changes: dict[str, dict[str, list[str]]] = {}
        for cls_name, group, options in self.rules:
            changes.setdefault(cls_name, {})[group] = list(options)
        return system.with_rules(changes)

    def describe(self) -> str:
        head = f"{self.note}: " if self.note else ""
        shown = "; ".join(f"{c}.{g} = {_quoted(o)}" for c, g, o in self.rules[:3])
        more = f" (+{len(self.rules) - 3} more)" if len(self.rules) > 3 else ""
        return f"{head}rules {shown}{more}" if self.rules else f"{head}no rule changes"


# ------------------------------------------------------------------- groups
@register
@dataclass(frozen=True)
class DropGroup(Edit):
    """Remove a question (and every rule's entry for it)."""

    kind: ClassVar[str] = "drop-group"
    group: str

    def apply(self, system: System) -> System:
        return system.without_group(self.group)

    def describe(self) -> str:
        return f"drop group {self.group}"


@register
@dataclass(frozen=True)
class MergeGroups(Edit):
    """Ask two questions as one: a group whose options are both groups' filled-in sentences.

    Its softmax compares every sentence of both groups at once; a class accepts its
    sentences from both. It takes the place of ``first``, with the sum of the weights.
    """

    kind: ClassVar[str] = "merge-groups"
    first: str
    second: str

    def apply(self, system: System) -> System:
        a, b = _group(system, self.first), _group(system, self.second)
        if a.name == b.name:
            raise InputError(f"merge-groups: cannot merge group {a.name!r} with itself")
        sentences_a, sentences_b = a.prompts(), b.prompts()
        options = list(dict.fromkeys(sentences_a + sentences_b))
        index = {s: i for i, s in enumerate(options)}
        rules = {
            cls_name: sorted({index[sentences_a[i]] for i in rule[a.name]} | {index[sentences_b[i]] for i in rule[b.name]})
            for cls_name, rule in system.rules.items()
        }
        name = f"{a.name}+{b.name}"
        position = sum(1 for g in system.groups[: system.group_names.index(a.name)] if g.name != b.name)
        merged = Group(name, "{}", tuple(options), a.weight + b.weight,
                       f"{a.name} and {b.name} asked as one question")
        without = system.without_group(a.name).without_group(b.name) if len(system.groups) > 2 else None
        if without is None:  # a system needs a group: add the merged one first, then drop both
            return system.with_group(merged, rules, position).without_group(a.name).without_group(b.name)
        return without.with_group(merged, rules, position)

    def describe(self) -> str:
        return f"merge groups {self.first} and {self.second}"


@register
@dataclass(frozen=True)
class SetGroupWeight(Edit):
    """How much one question's answer counts in every class score."""

    kind: ClassVar[str] = "set-weight"
    group: str
    weight: float

    def __post_init__(self) -> None:
        _finite(self.weight, "weight")

    def apply(self, system: System) -> System:
        return system.with_group_weights({self.group: self.weight})

    def describe(self) -> str:
        return f"weight {self.group} = {self.weight:g}"


@register
@dataclass(frozen=True)
class SetTemperature(Edit):
    """The softmax temperature stored in the system (``cotembed eval`` uses it)."""

    kind: ClassVar[str] = "set-temperature"
    temperature: float

    def __post_init__(self) -> None:
        _finite(self.temperature, "temperature")

    def apply(self, system: System) -> System:
        return system.with_temperature(self.temperature)

    def describe(self) -> str:
        return f"temperature = {self.temperature:.4g}"


# ---------------------------------------------------------------- compounds
@register
@dataclass(frozen=True)
class ReplaceSystem(Edit):
    """A whole new system for the same classes (an LLM's revision), held as canonical JSON text."""

    kind: ClassVar[str] = "replace-system"
    system_json: str
    note: str = ""

    @classmethod
    def of(cls, system: System, note: str = "") -> "ReplaceSystem":
        return cls(json.dumps(system.to_dict(), ensure_ascii=False, sort_keys=False), note)

    def apply(self, system: System) -> System:
        try:
            data = json.loads(self.system_json)
        except ValueError as exc:
            raise InputError(f"replace-system: not JSON ({exc})") from None
        new = System.from_dict(data, source=f"replace-system ({self.note or 'proposal'})")
        if set(new.class_names) != set(system.class_names):
            missing = sorted(set(system.class_names) - set(new.class_names))
            extra = sorted(set(new.class_names) - set(system.class_names))
            raise SystemValidationError("replace-system", [f"classes differ: missing {missing}, extra {extra}"])
        if new.class_names != system.class_names:  # same classes, in the system's order
            new = System.from_dict({**new.to_dict(), "rules": {c: new.to_dict()["rules"][c] for c in system.class_names}})
        return new

    def describe(self) -> str:
        return f"replace system ({self.note})" if self.note else "replace system"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "system": json.loads(self.system_json), "note": self.note}


@register
@dataclass(frozen=True)
class Compound(Edit):
    """Several edits applied in order, judged as one candidate (e.g. a reword and the rules it implies)."""

    kind: ClassVar[str] = "compound"
    edits: tuple[Edit, ...]
    note: str = ""

    def apply(self, system: System) -> System:
        for edit in self.edits:
            system = edit.apply(system)
        return system

    def describe(self) -> str:
        inner = "; ".join(e.describe() for e in self.edits)
        return f"{self.note}: {inner}" if self.note else inner


# ------------------------------------------------------------------- helpers
def _group(system: System, name: str) -> Group:
    for g in system.groups:
        if g.name == name:
            return g
    raise InputError(f"unknown group {name!r} (groups are: {', '.join(system.group_names)})")


def _finite(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{what} must be a positive finite number, got {value!r}")


def edit_from_dict(data: Mapping[str, Any]) -> Edit:
    """The edit a history line describes (``to_dict``'s inverse); unknown kinds or fields are input errors."""
    if not isinstance(data, Mapping) or "kind" not in data:
        raise InputError(f"an edit is a mapping with a 'kind', got {data!r}")
    kind = data["kind"]
    cls = EDITS.get(kind)
    if cls is None:
        raise InputError(f"unknown edit kind {kind!r}; kinds are: {', '.join(EDITS)}")
    fields = {k: v for k, v in data.items() if k != "kind"}
    if cls is ReplaceSystem:
        return ReplaceSystem(json.dumps(fields.get("system"), ensure_ascii=False), str(fields.get("note", "")))
    if cls is Compound:
        return Compound(tuple(edit_from_dict(e) for e in fields.get("edits", ())), str(fields.get("note", "")))
    if cls is SetRules:
        fields["rules"] = tuple((c, g, tuple(o)) for c, g, o in fields.get("rules", ()))
    try:
        return cls(**fields)
    except TypeError as exc:
        raise InputError(f"edit {kind!r}: {exc}") from None


__all__ = [
    "EDITS",
    "Compound",
    "DropGroup",
    "Edit",
    "MergeGroups",
    "MergeOptions",
    "RemoveOption",
    "ReplaceSystem",
    "RewordOption",
    "SetGroupWeight",
    "SetRules",
    "SetTemperature",
    "edit_from_dict",
    "register",
]
