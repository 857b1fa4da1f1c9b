"""Classification systems: attribute groups, options and per-class rules.

A system is the knowledge that turns a frozen embedding model into a
chain-of-thought classifier. It loads from YAML or JSON, accepts the seed
article's own keys unchanged (``classification_cot`` / ``classification_groups``
and ``pokemon_rules``), validates everything up front so an invalid system
never runs, and compiles to the matrices the scoring functions need.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import yaml

from cotembed.errors import SystemValidationError

GROUP_KEYS = ("groups", "classification_groups", "classification_cot")
RULE_KEYS = ("rules", "pokemon_rules")
_TOP_LEVEL = {*GROUP_KEYS, *RULE_KEYS, "name", "baseline_prompt", "temperature", "aliases", "description"}


@dataclass(frozen=True)
class Group:
    """One question: a prompt template with a single ``{}`` and its answer options."""

    name: str
    prompt: str
    options: tuple[str, ...]
    weight: float = 1.0

    def prompts(self) -> list[str]:
        return [self.prompt.replace("{}", option, 1) for option in self.options]


@dataclass(frozen=True)
class CompiledSystem:
    """A system as arrays, so a batch scores with two matrix products.

    ``prompts`` holds the Q filled-in option prompts, grouped contiguously;
    group ``g`` owns ``prompts[offsets[g]:offsets[g + 1]]``. ``rule_matrix``
    is Q x N: entry (q, n) is the group weight when class n accepts option q.
    """

    prompts: tuple[str, ...]
    offsets: np.ndarray
    rule_matrix: np.ndarray
    class_names: tuple[str, ...]
    group_names: tuple[str, ...]
    baseline_prompts: tuple[str, ...]

    @property
    def n_prompts(self) -> int:
        return len(self.prompts)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class System:
    """A validated classification system. Build with :meth:`load` or :meth:`from_dict`."""

    groups: tuple[Group, ...]
    rules: Mapping[str, Mapping[str, tuple[int, ...]]]
    name: str = ""
    baseline_prompt: str = "{}"
    temperature: float | None = None
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    description: str = ""

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path) -> "System":
        """Load and validate a ``.yaml``/``.yml``/``.json`` system file."""
        path = Path(path)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SystemValidationError(source, [f"cannot read file: {exc.strerror or exc}"]) from exc
        data = parse_system_text(text, source, json_format=path.suffix.lower() == ".json")
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> "System":
        """Validate a dict in the seed's shape or the canonical one and build a System."""
        problems: list[str] = []
        system = _build(data, problems)
        if problems or system is None:
            raise SystemValidationError(source, problems)
        return system

    # ------------------------------------------------------------------ saving
    def to_dict(self) -> dict[str, Any]:
        """Canonical, human-editable form: rules refer to options by text."""
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        if self.description:
            out["description"] = self.description
        if self.baseline_prompt != "{}":
            out["baseline_prompt"] = self.baseline_prompt
        if self.temperature is not None:
            out["temperature"] = self.temperature
        groups: dict[str, Any] = {}
        for g in self.groups:
            entry: dict[str, Any] = {"prompt": g.prompt, "options": list(g.options)}
            if g.weight != 1.0:
                entry["weight"] = g.weight
            groups[g.name] = entry
        out["groups"] = groups
        by_name = {g.name: g for g in self.groups}
        rules: dict[str, Any] = {}
        for cls_name, rule in self.rules.items():
            rules[cls_name] = {
                gname: (by_name[gname].options[idx[0]] if len(idx) == 1 else [by_name[gname].options[i] for i in idx])
                for gname, idx in rule.items()
            }
        out["rules"] = rules
        if self.aliases:
            out["aliases"] = {k: list(v) for k, v in self.aliases.items()}
        return out

    def save(self, path: str | Path) -> None:
        path = Path(path)
        data = self.to_dict()
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        else:
            path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100), encoding="utf-8")

    # -------------------------------------------------------------- properties
    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.rules)

    @property
    def n_prompts(self) -> int:
        """Q: the number of text prompts the chain-of-thought method embeds."""
        return sum(len(g.options) for g in self.groups)

    @property
    def hash(self) -> str:
        """Stable short hash of the canonical content, recorded in every output."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def resolve_label(self, label: str) -> str | None:
        """Map a dataset label (class name or alias, case-insensitive) to a class name."""
        if label in self.rules:
            return label
        folded = label.casefold().strip()
        for cls_name in self.rules:
            if cls_name.casefold() == folded:
                return cls_name
        for cls_name, names in self.aliases.items():
            if any(a.casefold() == folded for a in names):
                return cls_name
        return None

    def identical_rules(self) -> list[list[str]]:
        """Sets of classes whose rules are the same: CoT alone cannot separate them."""
        by_rule: dict[tuple, list[str]] = {}
        for cls_name, rule in self.rules.items():
            by_rule.setdefault(tuple(rule[g.name] for g in self.groups), []).append(cls_name)
        return [names for names in by_rule.values() if len(names) > 1]

    def summary(self) -> dict[str, Any]:
        """What ``cotembed validate`` reports: sizes, groups, hash and ties."""
        return {
            "name": self.name,
            "hash": self.hash,
            "n_groups": len(self.groups),
            "n_classes": len(self.rules),
            "n_prompts": self.n_prompts,
            "groups": [{"name": g.name, "prompt": g.prompt, "n_options": len(g.options), "weight": g.weight} for g in self.groups],
            "identical_rules": self.identical_rules(),
        }

    def compile(self) -> CompiledSystem:
        prompts: list[str] = []
        offsets = [0]
        for g in self.groups:
            prompts.extend(g.prompts())
            offsets.append(len(prompts))
        classes = self.class_names
        rule_matrix = np.zeros((len(prompts), len(classes)), dtype=np.float32)
        for n, cls_name in enumerate(classes):
            for gi, g in enumerate(self.groups):
                for idx in self.rules[cls_name][g.name]:
                    rule_matrix[offsets[gi] + idx, n] = g.weight
        return CompiledSystem(
            prompts=tuple(prompts),
            offsets=np.asarray(offsets, dtype=np.int64),
            rule_matrix=rule_matrix,
            class_names=classes,
            group_names=tuple(g.name for g in self.groups),
            baseline_prompts=tuple(self.baseline_prompt.replace("{}", c, 1) for c in classes),
        )


# --------------------------------------------------------------------- parsing
class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that reports duplicate mapping keys instead of silently keeping the last."""

    duplicates: list[str]


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            loader.duplicates.append(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def parse_system_text(text: str, source: str, json_format: bool = False) -> Any:
    """Parse YAML (a superset of JSON) or strict JSON, naming line numbers on failure."""
    if json_format:
        duplicates: list[str] = []

        def pairs_hook(pairs: list[tuple[str, Any]]) -> dict:
            keys = [k for k, _ in pairs]
            duplicates.extend(f"duplicate key {k!r}" for k in {k for k in keys if keys.count(k) > 1})
            return dict(pairs)

        try:
            data = json.loads(text, object_pairs_hook=pairs_hook)
        except json.JSONDecodeError as exc:
            raise SystemValidationError(source, [f"line {exc.lineno}, column {exc.colno}: malformed JSON: {exc.msg}"]) from exc
        if duplicates:
            raise SystemValidationError(source, duplicates)
        return data
    loader = _UniqueKeyLoader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SystemValidationError(source, [f"{where}malformed YAML: {problem}"]) from exc
    finally:
        loader.dispose()
    if loader.duplicates:
        raise SystemValidationError(source, loader.duplicates)
    return data


# ------------------------------------------------------------------ validation
def _pick(data: Mapping[str, Any], keys: Iterable[str], what: str, problems: list[str]) -> Any:
    present = [k for k in keys if k in data]
    if not present:
        problems.append(f"missing {what} (expected one of: {', '.join(keys)})")
        return None
    if len(present) > 1:
        problems.append(f"{what} given twice ({' and '.join(present)}); keep one")
    return data[present[0]]


def _positive_number(value: Any, path: str, problems: list[str]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"{path}: must be a number, got {value!r}")
        return None
    if not value > 0 or value != value or value == float("inf"):
        problems.append(f"{path}: must be a positive finite number, got {value!r}")
        return None
    return float(value)


def _check_template(prompt: Any, path: str, problems: list[str]) -> bool:
    if not isinstance(prompt, str):
        problems.append(f"{path}: must be a string with one '{{}}', got {prompt!r}")
        return False
    count = prompt.count("{}")
    if count != 1:
        problems.append(f"{path}: prompt must contain exactly one '{{}}' (found {count}): {prompt!r}")
        return False
    return True


def _build_group(gname: str, spec: Any, problems: list[str]) -> Group | None:
    path = f"groups.{gname}"
    if not isinstance(spec, Mapping):
        problems.append(f"{path}: must be a mapping with 'prompt' and 'options'")
        return None
    unknown = set(spec) - {"prompt", "options", "weight", "description"}
    if unknown:
        problems.append(f"{path}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    ok = True
    if "prompt" not in spec:
        problems.append(f"{path}.prompt: missing")
        ok = False
    else:
        ok = _check_template(spec["prompt"], f"{path}.prompt", problems) and ok
    options = spec.get("options")
    if not isinstance(options, list) or not options:
        problems.append(f"{path}.options: must be a non-empty list")
        return None
    seen: dict[str, int] = {}
    for i, opt in enumerate(options):
        if not isinstance(opt, str) or not opt.strip():
            problems.append(f"{path}.options[{i}]: option must be a non-empty string, got {opt!r}")
            ok = False
        elif opt in seen:
            problems.append(f"{path}.options[{i}]: duplicate option {opt!r} (same as options[{seen[opt]}])")
            ok = False
        else:
            seen[opt] = i
    weight = 1.0
    if "weight" in spec:
        w = _positive_number(spec["weight"], f"{path}.weight", problems)
        ok = ok and w is not None
        weight = w or 1.0
    if not ok:
        return None
    return Group(name=gname, prompt=spec["prompt"], options=tuple(options), weight=weight)


def _resolve_option(value: Any, group: Group, path: str, problems: list[str]) -> int | None:
    n = len(group.options)
    if isinstance(value, bool):
        problems.append(f"{path}: expected an option index or text, got {value!r}")
    elif isinstance(value, int):
        if 0 <= value < n:
            return value
        problems.append(f"{path}: option {value} out of range (group has {n} options)")
    elif isinstance(value, str):
        if value in group.options:
            return group.options.index(value)
        problems.append(f"{path}: option {value!r} is not one of the group's options")
    else:
        problems.append(f"{path}: expected an option index, option text or a list of them, got {value!r}")
    return None


def _build_rule(cls_name: str, rule: Any, groups: Mapping[str, Group], problems: list[str]) -> dict[str, tuple[int, ...]]:
    path = f"rules.{cls_name}"
    if not isinstance(rule, Mapping):
        problems.append(f"{path}: must map each group to an option")
        return {}
    resolved: dict[str, tuple[int, ...]] = {}
    for gname, value in rule.items():
        if gname not in groups:
            problems.append(f"{path}.{gname}: unknown group (groups are: {', '.join(groups)})")
            continue
        values = value if isinstance(value, list) else [value]
        if not values:
            problems.append(f"{path}.{gname}: empty list of options")
            continue
        indices = [_resolve_option(v, groups[gname], f"{path}.{gname}", problems) for v in values]
        if any(i is None for i in indices):
            continue
        if len(set(indices)) != len(indices):
            problems.append(f"{path}.{gname}: the same option is listed twice")
            continue
        resolved[gname] = tuple(sorted(set(i for i in indices if i is not None)))
    for gname in groups:
        if gname not in rule:
            problems.append(f"{path}: missing group {gname!r}")
    return resolved


def _build(data: Any, problems: list[str]) -> System | None:
    if not isinstance(data, Mapping):
        problems.append(f"top level: expected a mapping with groups and rules, got {type(data).__name__}")
        return None
    unknown = set(data) - _TOP_LEVEL
    if unknown:
        problems.append(f"top level: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    raw_groups = _pick(data, GROUP_KEYS, "groups", problems)
    raw_rules = _pick(data, RULE_KEYS, "rules", problems)

    groups: dict[str, Group] = {}
    if raw_groups is not None:
        if not isinstance(raw_groups, Mapping) or not raw_groups:
            problems.append("groups: must be a non-empty mapping of group name to {prompt, options}")
        else:
            for gname, spec in raw_groups.items():
                group = _build_group(str(gname), spec, problems)
                if group is not None:
                    groups[str(gname)] = group
    rules: dict[str, dict[str, tuple[int, ...]]] = {}
    if raw_rules is not None:
        if not isinstance(raw_rules, Mapping) or not raw_rules:
            problems.append("rules: must be a non-empty mapping of class name to its options per group")
        elif raw_groups is not None and len(groups) == len(raw_groups):
            folded: dict[str, str] = {}
            for cls_name, rule in raw_rules.items():
                cls_name = str(cls_name)
                key = cls_name.casefold().strip()
                if key in folded:
                    problems.append(f"rules.{cls_name}: duplicate class (same as {folded[key]!r})")
                    continue
                folded[key] = cls_name
                rules[cls_name] = _build_rule(cls_name, rule, groups, problems)

    baseline_prompt = data.get("baseline_prompt", "{}")
    _check_template(baseline_prompt, "baseline_prompt", problems)
    temperature = None
    if data.get("temperature") is not None:
        temperature = _positive_number(data["temperature"], "temperature", problems)
    aliases = _build_aliases(data.get("aliases") or {}, rules, problems)
    name = data.get("name", "")
    if not isinstance(name, str):
        problems.append(f"name: must be a string, got {name!r}")
    if problems:
        return None
    return System(
        groups=tuple(groups.values()),
        rules=rules,
        name=name,
        baseline_prompt=baseline_prompt,
        temperature=temperature,
        aliases=aliases,
        description=str(data.get("description", "") or ""),
    )


def _build_aliases(raw: Any, rules: Mapping[str, Any], problems: list[str]) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, Mapping):
        problems.append("aliases: must map class name to a list of alternative labels")
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for cls_name, names in raw.items():
        if cls_name not in rules:
            problems.append(f"aliases.{cls_name}: not a class of this system")
            continue
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            problems.append(f"aliases.{cls_name}: must be a list of non-empty strings")
            continue
        out[str(cls_name)] = tuple(names)
    return out
