"""A proposed system as separate changes a person accepts one by one, and the system a chosen subset makes.

Any proposer's answer (induce's rules, an optimise run's best system, an LLM's revision)
is split into the smallest changes that each leave a valid system when applied alone:
a temperature, a top-level field, a dropped or added group (an added group carries its
rules), a group's prompt, weight or description, one reworded option (rules follow it,
since they name options by position), a group's whole option list when options were
added, removed or reordered (it carries that group's rules), and one class's rule in
one group. The chosen changes are made on the system's canonical dict, in a fixed
order, and the result is validated: a subset that does not make a valid system is
reported with its problems and changes nothing.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from cotembed.errors import InputError
from cotembed.system import System

Change = dict[str, Any]
TOP_FIELDS = ("name", "description", "baseline_prompt", "templates", "aliases")


def _texts(system: System, group: str, indices: Sequence[int]) -> list[str]:
    options = system.groups[system.group_names.index(group)].options
    return [options[i] for i in indices]


def _top_field(system: System, key: str) -> Any:
    return system.to_dict().get(key)


def system_changes(base: System, proposed: System) -> list[Change]:
    """``proposed``'s differences from ``base`` (same classes), each a change that applies on its own."""
    changes: list[Change] = []
    if proposed.temperature != base.temperature:
        changes.append({"kind": "temperature", "before": base.temperature, "after": proposed.temperature})
    base_dict, proposed_dict = base.to_dict(), proposed.to_dict()
    for key in TOP_FIELDS:
        if base_dict.get(key) != proposed_dict.get(key):
            changes.append({"kind": "field", "field": key, "before": base_dict.get(key), "after": proposed_dict.get(key)})
    kept = {g.name: g for g in proposed.groups}
    for g in base.groups:
        if g.name not in kept:
            changes.append({"kind": "drop", "group": g.name, "before": g.weight, "after": 0.0})
    old = {g.name: g for g in base.groups}
    for g in proposed.groups:
        if g.name not in old:
            changes.append({"kind": "add_group", "group": g.name, "prompt": g.prompt, "options": list(g.options), "weight": g.weight,
                            "description": g.description,
                            "rules": {c: _texts(proposed, g.name, proposed.rules[c][g.name]) for c in proposed.class_names}})
    for g in proposed.groups:
        before = old.get(g.name)
        if before is None:
            continue
        if before.prompt != g.prompt:
            changes.append({"kind": "prompt", "group": g.name, "before": before.prompt, "after": g.prompt})
        if before.weight != g.weight:
            changes.append({"kind": "weight", "group": g.name, "before": before.weight, "after": g.weight})
        if before.description != g.description:
            changes.append({"kind": "group_description", "group": g.name, "before": before.description, "after": g.description})
        reshaped = len(before.options) != len(g.options)
        if reshaped:
            changes.append({"kind": "options", "group": g.name, "before": list(before.options), "after": list(g.options),
                            "rules": {c: _texts(proposed, g.name, proposed.rules[c][g.name]) for c in proposed.class_names}})
            continue
        for i, (was, now) in enumerate(zip(before.options, g.options)):
            if was != now:
                changes.append({"kind": "option", "group": g.name, "index": i, "before": was, "after": now})
        for cls_name in proposed.class_names:
            was_rule, now_rule = base.rules[cls_name][g.name], proposed.rules[cls_name][g.name]
            if tuple(was_rule) != tuple(now_rule):
                changes.append({"kind": "rule", "class": cls_name, "group": g.name, "before": _texts(base, g.name, was_rule),
                                "after": _texts(proposed, g.name, now_rule), "indices": list(now_rule)})
    return changes


# ------------------------------------------------------------------ applying
def _temperature(data: dict[str, Any], change: Change) -> None:
    if change["after"] is None:
        data.pop("temperature", None)
    else:
        data["temperature"] = float(change["after"])


def _field(data: dict[str, Any], change: Change) -> None:
    if change["after"] is None:
        data.pop(change["field"], None)
    else:
        data[change["field"]] = change["after"]


def _drop(data: dict[str, Any], change: Change) -> None:
    data["groups"].pop(change["group"], None)
    for rule in data["rules"].values():
        rule.pop(change["group"], None)


def _add_group(data: dict[str, Any], change: Change) -> None:
    entry: dict[str, Any] = {"prompt": change["prompt"], "options": list(change["options"]), "weight": change["weight"]}
    if change.get("description"):
        entry["description"] = change["description"]
    data["groups"][change["group"]] = entry
    for cls_name, rule in data["rules"].items():
        rule[change["group"]] = list(change["rules"][cls_name])


def _group_entry(data: dict[str, Any], change: Change) -> dict[str, Any] | None:
    entry: dict[str, Any] | None = data["groups"].get(change["group"])
    return entry


def _options(data: dict[str, Any], change: Change) -> None:
    entry = _group_entry(data, change)
    if entry is None:
        return
    entry["options"] = list(change["after"])
    for cls_name, rule in data["rules"].items():
        if cls_name in change["rules"]:
            rule[change["group"]] = list(change["rules"][cls_name])


def _option(data: dict[str, Any], change: Change) -> None:
    """One reworded option; the rules that name it name the new wording (they refer to it by position)."""
    entry = _group_entry(data, change)
    if entry is None:
        return
    index, before, after = int(change["index"]), change["before"], change["after"]
    if not 0 <= index < len(entry["options"]) or entry["options"][index] != before:
        raise InputError(f"option {index} of {change['group']!r} is no longer {before!r}: this change no longer fits")
    entry["options"][index] = after
    for rule in data["rules"].values():
        value = rule.get(change["group"])
        if isinstance(value, list):
            rule[change["group"]] = [after if v == before else v for v in value]
        elif value == before:
            rule[change["group"]] = after


def _group_value(key: str) -> Callable[[dict[str, Any], Change], None]:
    def apply(data: dict[str, Any], change: Change) -> None:
        entry = _group_entry(data, change)
        if entry is not None:
            entry[key] = change["after"]

    return apply


def _rule(data: dict[str, Any], change: Change) -> None:
    """One class's rule in one group: by position when the change knows it (options may be reworded too), else by text."""
    entry = _group_entry(data, change)
    rule = data["rules"].get(change["class"])
    if entry is None or rule is None:
        return
    if "indices" in change:
        options = entry["options"]
        if any(not 0 <= i < len(options) for i in change["indices"]):
            raise InputError(f"the rule of {change['class']!r} in {change['group']!r} names an option the group no longer has")
        rule[change["group"]] = [options[i] for i in change["indices"]]
    else:
        rule[change["group"]] = list(change["after"])


APPLY: dict[str, Callable[[dict[str, Any], Change], None]] = {
    "temperature": _temperature,
    "field": _field,
    "drop": _drop,
    "add_group": _add_group,
    "options": _options,
    "option": _option,
    "prompt": _group_value("prompt"),
    "weight": _group_value("weight"),
    "group_description": _group_value("description"),
    "rule": _rule,
}
"""Change kind -> how it edits the canonical dict; the order of this table is the order changes are made in."""
ORDER = {kind: i for i, kind in enumerate(APPLY)}


def apply_changes(system: System, changes: Sequence[Change]) -> System:
    """``system`` with ``changes`` made (in :data:`APPLY`'s order) and validated; changes to groups it no longer has are skipped."""
    data = system.to_dict()
    for change in sorted(changes, key=lambda c: ORDER.get(c["kind"], len(ORDER))):
        handler = APPLY.get(change["kind"])
        if handler is None:
            raise InputError(f"unknown change kind {change['kind']!r}")
        handler(data, change)
    return System.from_dict(data, source="the accepted changes")


def describe(change: Change) -> str:
    """One line for a change of a kind the page has no dedicated row for."""
    kind = change["kind"]
    if kind == "field":
        return f"{change['field']}: {change['before']!r} → {change['after']!r}"
    if kind == "group_description":
        return f"description of {change['group']}: {change['before']!r} → {change['after']!r}"
    return str(kind)


__all__ = ["APPLY", "Change", "apply_changes", "describe", "system_changes"]
