"""Validation: a parsed dict (the seed's keys or the canonical ones) to the parts of a System.

Every problem is collected with its path (``rules.Absol.colour: ...``) so one
run reports them all. Well-formed rules take a fast path of table look-ups (a
300 x 5,000 system validates in seconds); anything odd takes the checking path
that names the problem. Edits reuse :func:`edit_options` and the field checks.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, Sequence

from cotembed.system._parts import (
    GROUP_KEYS,
    RULE_KEYS,
    Group,
    Row,
    Rule,
    check_template,
    group_problems,
    listing,
    none_option_problems,
    positive_number,
    shown,
    trusted_group,
)

_TOP_LEVEL = {*GROUP_KEYS, *RULE_KEYS, "name", "baseline_prompt", "temperature", "aliases", "description", "templates"}
_GROUP_FIELDS = {"prompt", "options", "weight", "description", "none_option"}
MISSING: Any = object()
"""A section absent from the file (already reported)."""


def _pick(data: Mapping[str, Any], keys: Sequence[str], what: str, problems: list[str]) -> Any:
    """The section under whichever accepted key is present; MISSING (reported) when none is."""
    present = [k for k in keys if k in data]
    if not present:
        problems.append(f"missing {what} (expected one of: {', '.join(keys)})")
        return MISSING
    if len(present) > 1:
        problems.append(f"{what} given twice ({' and '.join(present)}); keep one")
    return data[present[0]]


def _build_group(gname: str, spec: Any, problems: list[str]) -> Group | None:
    path = f"groups.{gname}"
    if not isinstance(spec, Mapping):
        problems.append(f"{path}: must be a mapping with 'prompt' and 'options'")
        return None
    before = len(problems)
    unknown = set(spec) - _GROUP_FIELDS
    if unknown:
        problems.append(f"{path}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    if "prompt" not in spec:
        problems.append(f"{path}.prompt: missing")
    found = group_problems(gname, spec.get("prompt", "{}"), spec.get("options"), spec.get("weight", 1.0),
                            spec.get("description", ""), spec.get("none_option"))
    problems.extend(found)
    if len(problems) > before:
        return None
    return trusted_group(gname, spec["prompt"], tuple(spec["options"]), spec.get("weight", 1.0), spec.get("description", ""),
                         spec.get("none_option"))


def check_group_objects(groups: Any, problems: list[str]) -> list[Group]:
    """Direct construction: groups are Group objects (already valid); check the collection."""
    if isinstance(groups, Group) or not isinstance(groups, (list, tuple)) or not groups:
        problems.append("groups: must be a non-empty sequence of Group")
        return []
    out: list[Group] = []
    seen: set[str] = set()
    for i, group in enumerate(groups):
        if not isinstance(group, Group):
            problems.append(f"groups[{i}]: expected a Group, got {type(group).__name__}")
        elif group.name in seen:
            problems.append(f"groups.{group.name}: duplicate group name")
        else:
            seen.add(group.name)
            out.append(group)
    return out


def parts_from_dict(data: Any, problems: list[str]) -> dict[str, Any] | None:
    """The keyword arguments of ``System._make`` for a valid dict; None (and ``problems``) otherwise."""
    if not isinstance(data, Mapping):
        problems.append(f"top level: expected a mapping with groups and rules, got {type(data).__name__}")
        return None
    unknown = set(data) - _TOP_LEVEL
    if unknown:
        problems.append(f"top level: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    raw_groups = _pick(data, GROUP_KEYS, "groups", problems)
    raw_rules = _pick(data, RULE_KEYS, "rules", problems)

    groups: list[Group] | None = None
    broken: set[str] = set()
    if raw_groups is not MISSING:
        if not isinstance(raw_groups, Mapping) or not raw_groups:
            problems.append("groups: must be a non-empty mapping of group name to {prompt, options}")
        else:
            groups = []
            for gname, spec in raw_groups.items():
                group = _build_group(str(gname), spec, problems)
                if group is None:
                    broken.add(str(gname))
                else:
                    groups.append(group)
    fields = {
        "baseline_prompt": data.get("baseline_prompt", "{}"),
        "temperature": data.get("temperature"),
        "aliases": data.get("aliases") or {},
        "name": data.get("name", ""),
        "description": data.get("description", "") or "",
        "templates": data.get("templates"),
    }
    built = check_parts(groups, broken, raw_rules, fields, problems)
    return None if problems else built


def check_parts(groups: list[Group] | None, broken: set[str], raw_rules: Any, fields: Mapping[str, Any],
            problems: list[str]) -> dict[str, Any] | None:
    """Validate rules against the groups that parsed, then the scalar fields; the parts of a System.

    ``groups`` is None when the groups section itself is unusable: rules are
    then checked for shape only. Options for a ``broken`` group are not
    checked, and that is said once per group instead of once per class.
    """
    index = {g.name: i for i, g in enumerate(groups or ())}
    class_names: list[str] = []
    rows: list[Row] = []
    classes: set[str] = set()
    if isinstance(raw_rules, Mapping):
        if len(raw_rules) < 2:
            problems.append(f"rules: a classifier needs at least 2 classes (found {len(raw_rules)})")
        class_names, rows = _build_rules(raw_rules, groups, index, broken, problems)
        problems.extend(none_option_problems(groups or (), zip(class_names, rows)))
        classes = {str(c) for c in raw_rules}
    elif raw_rules is not MISSING:
        problems.append("rules: must be a mapping of class name to its options per group")

    baseline_prompt = fields["baseline_prompt"]
    check_template(baseline_prompt, "baseline_prompt", problems)
    temperature = fields["temperature"]
    if temperature is not None:
        temperature = positive_number(temperature, "temperature", problems)
    aliases = _build_aliases(fields["aliases"], classes, problems)
    name = fields["name"]
    if not isinstance(name, str):
        problems.append(f"name: must be a string, got {shown(name)}")
    description = fields["description"]
    if not isinstance(description, str):
        problems.append(f"description: must be a string, got {shown(description)}")
    templates = build_templates(fields["templates"], problems)
    if problems or groups is None:
        return None
    rules = MappingProxyType({c: Rule(index, r) for c, r in zip(class_names, rows)})
    return {"groups": tuple(groups), "rules": rules, "name": name, "baseline_prompt": baseline_prompt,
            "temperature": temperature, "aliases": aliases, "description": description, "templates": templates,
            "cache": {"group_index": index}}


def _option_table(group: Group) -> dict[Any, tuple[int, ...]]:
    """Rule value -> indices for one group: every option by text and by index, one shared tuple each."""
    table: dict[Any, tuple[int, ...]] = {}
    for i, text in enumerate(group.options):
        table[text] = table[i] = (i,)
    return table


def _build_rules(raw_rules: Mapping[Any, Any], groups: list[Group] | None, index: Mapping[str, int], broken: set[str],
                 problems: list[str]) -> tuple[list[str], list[Row]]:
    names = tuple(index)
    tables = [_option_table(g) for g in groups or ()]
    folded: dict[str, str] = {}
    class_names: list[str] = []
    rows: list[Row] = []
    skipped: set[str] = set()
    for raw_name, rule in raw_rules.items():
        cls_name = str(raw_name)
        key = cls_name.casefold().strip()
        if not key:
            problems.append(f"rules: a class name must be a non-empty string, got {shown(raw_name)}")
            continue
        if key in folded:
            problems.append(f"rules.{cls_name}: duplicate class (same as {shown(folded[key])})")
            continue
        folded[key] = cls_name
        if groups is None:
            if not isinstance(rule, Mapping):
                problems.append(f"rules.{cls_name}: must map each group to an option")
            continue
        row = _fast_row(rule, names, tables) if not broken else None
        if row is None:
            row = _checked_row(cls_name, rule, groups, index, broken, skipped, problems)
        if row is not None:
            class_names.append(cls_name)
            rows.append(row)
    for gname in sorted(skipped):
        problems.append(f"rules.*.{gname}: not checked because groups.{gname} is invalid")
    return class_names, rows


def _fast_row(rule: Any, names: tuple[str, ...], tables: list[dict[Any, tuple[int, ...]]]) -> Row | None:
    """The row of a well-formed rule by table look-ups, or None to take the checking path."""
    if not isinstance(rule, Mapping) or len(rule) != len(names):
        return None
    row: list[tuple[int, ...]] = []
    append = row.append
    try:
        for name, table in zip(names, tables):
            value = rule[name]
            kind = value.__class__
            if kind is str or kind is int:
                append(table[value])
            elif kind is list or kind is tuple:
                if any(v.__class__ is bool for v in value):
                    return None
                key = tuple(value)
                chosen = table.get(key)
                if chosen is None:
                    indices = [table[v][0] for v in value if v.__class__ is str or v.__class__ is int]
                    if not indices or len(indices) != len(value) or len(set(indices)) != len(indices):
                        return None
                    chosen = table[key] = tuple(sorted(indices))
                append(chosen)
            else:
                return None
    except (KeyError, TypeError):
        return None
    return tuple(row)


def _resolve_option(value: Any, group: Group, path: str, problems: list[str]) -> int | None:
    n = len(group.options)
    if isinstance(value, bool):
        problems.append(f"{path}: expected an option index or text, got {shown(value)}")
    elif isinstance(value, int):
        if 0 <= value < n:
            return value
        problems.append(f"{path}: option {value} out of range (group has {n} options)")
    elif isinstance(value, str):
        if value in group.options:
            return group.options.index(value)
        problems.append(f"{path}: option {shown(value)} is not one of the group's options")
    else:
        problems.append(f"{path}: expected an option index, option text or a list of them, got {shown(value)}")
    return None


def _checked_row(cls_name: str, rule: Any, groups: list[Group], index: Mapping[str, int], broken: set[str],
                 skipped: set[str], problems: list[str]) -> Row | None:
    """Resolve one rule value by value, naming every problem with its path."""
    path = f"rules.{cls_name}"
    if not isinstance(rule, Mapping):
        problems.append(f"{path}: must map each group to an option")
        return None
    before = len(problems)
    resolved: dict[str, tuple[int, ...]] = {}
    for gname, value in rule.items():
        if gname in broken:
            skipped.add(gname)
            continue
        if gname not in index:
            problems.append(f"{path}.{gname}: unknown group (groups are: {listing(index)})")
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        if not values:
            problems.append(f"{path}.{gname}: empty list of options")
            continue
        group = groups[index[gname]]
        indices = [_resolve_option(v, group, f"{path}.{gname}", problems) for v in values]
        if any(i is None for i in indices):
            continue
        if len(set(indices)) != len(indices):
            problems.append(f"{path}.{gname}: the same option is listed twice")
            continue
        resolved[gname] = tuple(sorted(i for i in indices if i is not None))
    for gname in index:
        if gname not in rule:
            problems.append(f"{path}: missing group {shown(gname)}")
    if len(problems) > before:
        return None
    return tuple(resolved[g] for g in index)


def build_templates(raw: Any, problems: list[str]) -> tuple[str, ...]:
    """The ``templates`` field: None (absent) is no templates; given, a non-empty list of distinct ones."""
    if raw is None:
        return ()
    if isinstance(raw, str) or not isinstance(raw, (list, tuple)):
        problems.append(f"templates: must be a list of prompt templates with one '{{}}' each, got {shown(raw)}")
        return ()
    if not raw:
        problems.append("templates: empty list; leave the field out (or set None) to use the ensemble method's defaults")
        return ()
    before = len(problems)
    seen: dict[str, int] = {}
    for i, template in enumerate(raw):
        if not check_template(template, f"templates[{i}]", problems):
            continue
        if template in seen:
            problems.append(f"templates[{i}]: duplicate template {shown(template)} (same as templates[{seen[template]}])")
        else:
            seen[template] = i
    return tuple(raw) if len(problems) == before else ()


def _build_aliases(raw: Any, classes: set[str], problems: list[str]) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, Mapping):
        problems.append("aliases: must map class name to a list of alternative labels")
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for cls_name, names in raw.items():
        if cls_name not in classes:
            problems.append(f"aliases.{cls_name}: not a class of this system")
            continue
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n for n in names):
            problems.append(f"aliases.{cls_name}: must be a list of non-empty strings")
            continue
        out[str(cls_name)] = tuple(names)
    return out


def edit_options(group: Group, value: Any, path: str, unknown: list[str], problems: list[str]) -> tuple[int, ...] | None:
    """Resolve an edit's option(s): unknown options go to ``unknown``, malformed values to ``problems``."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        problems.append(f"{path}: empty list of options")
        return None
    indices: list[int] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            problems.append(f"{path}: expected an option index, option text or a list of them, got {shown(v)}")
            return None
        index = group._find(v)
        if index is None:
            unknown.append(f"{path}: {group._unknown(v)}")
            return None
        indices.append(index)
    if len(set(indices)) != len(indices):
        problems.append(f"{path}: the same option is listed twice")
        return None
    if group.none_option is not None and group.none_index in indices:
        problems.append(f"{path}: accepts {shown(group.none_option)}, the group's none_option, which no class may use")
        return None
    return tuple(sorted(indices))
