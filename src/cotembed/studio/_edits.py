"""The edits the studio's page sends, by name: each makes one System edit or raises a validation error,
so an edit that does not validate changes nothing."""

from __future__ import annotations

from typing import Any, Callable

from cotembed.errors import InputError
from cotembed.system import System


def _group(system: System, op: dict[str, Any]) -> str:
    name = str(op.get("group", ""))
    if name not in system.group_names:
        raise InputError(f"no group {name!r}")
    return name


def _text(op: dict[str, Any], key: str = "text") -> str:
    value = op.get(key)
    if not isinstance(value, str):
        raise InputError(f"{key} must be text")
    return value


def _edit_option(system: System, op: dict[str, Any]) -> System:
    return system.replace_option(_group(system, op), int(op["index"]), _text(op).strip())


def _edit_prompt(system: System, op: dict[str, Any]) -> System:
    data = system.to_dict()
    data["groups"][_group(system, op)]["prompt"] = _text(op)
    return System.from_dict(data, source="prompt")


def _edit_weight(system: System, op: dict[str, Any]) -> System:
    text = str(op.get("text", op.get("value", ""))).strip()
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"weight must be a number, got {text!r}") from None
    return system.with_group_weights({_group(system, op): value})


def _edit_rule(system: System, op: dict[str, Any]) -> System:
    group = _group(system, op)
    cls_name = str(op.get("class", ""))
    if cls_name not in system.rules:
        raise InputError(f"no class {cls_name!r}")
    options = [part.strip() for part in _text(op).split("|") if part.strip()]
    if not options:
        raise InputError(f"{cls_name}.{group}: name at least one option (separate several with |)")
    known = system.groups[system.group_names.index(group)].options
    unknown = [o for o in options if o not in known]
    if unknown:
        raise InputError(f"{cls_name}.{group}: {', '.join(map(repr, unknown))} is not an option of {group!r}")
    return system.with_rule(cls_name, group, options)


def _add_option(system: System, op: dict[str, Any]) -> System:
    return system.add_option(_group(system, op), _text(op).strip())


def _remove_option(system: System, op: dict[str, Any]) -> System:
    return system.remove_option(_group(system, op), int(op["index"]))


EDITS: dict[str, Callable[[System, dict[str, Any]], System]] = {
    "option": _edit_option,
    "prompt": _edit_prompt,
    "weight": _edit_weight,
    "rule": _edit_rule,
    "add_option": _add_option,
    "remove_option": _remove_option,
}
"""Edit name -> the System edit it makes; each raises a validation error instead of returning an invalid system."""


def edit_field(op: dict[str, Any]) -> str:
    kind = str(op.get("op"))
    if kind in ("option", "remove_option"):
        return f"option:{op.get('group')}:{op.get('index')}"
    if kind == "rule":
        return f"rule:{op.get('class')}:{op.get('group')}"
    return f"{kind}:{op.get('group')}"


def edit_message(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    return str(exc)


__all__ = ["EDITS", "edit_field", "edit_message"]
