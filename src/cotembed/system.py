"""Classification systems: attribute groups, options and per-class rules.

A system is the knowledge that turns a frozen embedding model into a
chain-of-thought classifier. It loads from YAML or JSON, accepts the seed
article's own keys unchanged (``classification_cot`` / ``classification_groups``
and ``pokemon_rules``), validates everything up front so an invalid system
never runs, and compiles to the matrices the scoring functions need.

A :class:`System` is immutable and hashable. Its :attr:`~System.fingerprint`
covers exactly what changes scores, so results, caches and optimisers can key
on it. Edits (``replace_option``, ``with_rule``, ``without_group``, ...) return
new, validated systems and re-check only what they touch, so a search can make
thousands of them. Rules are stored as rows aligned with the groups: cheap to
copy, compare, hash and compile.
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import json
import math
import numbers
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, cast

import numpy as np
import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from cotembed.errors import InputError, SystemValidationError

GROUP_KEYS = ("groups", "classification_groups", "classification_cot")
RULE_KEYS = ("rules", "pokemon_rules")
_TOP_LEVEL = {*GROUP_KEYS, *RULE_KEYS, "name", "baseline_prompt", "temperature", "aliases", "description", "templates"}
_GROUP_FIELDS = {"prompt", "options", "weight", "description"}

Row = tuple[tuple[int, ...], ...]
"""One class's rule: for each group (in the system's order) the sorted option indices it accepts."""

OptionRef = int | str
"""An option named by its index in the group or by its text."""


# ---------------------------------------------------------------------- groups
@dataclass(frozen=True)
class Group:
    """One question: a prompt template with a single ``{}`` and its answer options.

    Validated on construction (a list of options becomes a tuple, an integer
    weight a float), so every Group that exists can be compiled.
    """

    name: str
    prompt: str
    options: tuple[str, ...]
    weight: float = 1.0
    description: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.options, list):
            object.__setattr__(self, "options", tuple(self.options))
        problems = _group_problems(self.name, self.prompt, self.options, self.weight, self.description)
        if problems:
            raise SystemValidationError(f"group {_shown(self.name)}", problems)
        object.__setattr__(self, "weight", float(self.weight))

    def prompts(self) -> list[str]:
        return [self.prompt.replace("{}", option, 1) for option in self.options]

    def option_index(self, option: OptionRef) -> int:
        """Index of an option given by index or text; InputError naming it when it is not one."""
        index = self._find(option)
        if index is None:
            raise InputError(f"group {_shown(self.name)}: {self._unknown(option)}")
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
            return f"expected an option index or text, got {_shown(option)}"
        if isinstance(option, int):
            return f"unknown option {option} (the group has {len(self.options)} options)"
        return f"unknown option {_shown(option)} (options are: {_listing(self.options)})"

    def _with(self, **changes: Any) -> "Group":
        """A copy with some fields changed, validated like any new Group (cheap: one group)."""
        return dataclasses.replace(self, **changes)


def _trusted_group(name: str, prompt: str, options: tuple[str, ...], weight: float, description: str) -> Group:
    """A Group whose fields were just validated: skip checking them a second time."""
    group = object.__new__(Group)
    for key, value in (("name", name), ("prompt", prompt), ("options", options), ("weight", float(weight)),
                       ("description", description)):
        object.__setattr__(group, key, value)
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


# ------------------------------------------------------------------- compiled
@dataclass(frozen=True)
class CompiledSystem:
    """A system as arrays, so a batch scores with two matrix products.

    ``prompts`` holds the Q filled-in option prompts, grouped contiguously;
    group ``g`` owns ``prompts[offsets[g]:offsets[g + 1]]``. ``rule_matrix``
    is Q x N: entry (q, n) is the group weight when class n accepts option q.
    The arrays are read-only: a system compiles once and shares the result.
    ``templates`` are the system's own prompt-ensembling templates (empty when
    it has none), so scoring methods need no System object.
    """

    prompts: tuple[str, ...]
    offsets: np.ndarray
    rule_matrix: np.ndarray
    class_names: tuple[str, ...]
    group_names: tuple[str, ...]
    baseline_prompts: tuple[str, ...]
    templates: tuple[str, ...] = ()

    @property
    def n_prompts(self) -> int:
        return len(self.prompts)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


# ---------------------------------------------------------------------- system
@dataclass(frozen=True, eq=False, repr=False)
class System:
    """A validated, immutable classification system.

    Build with :meth:`load`, :meth:`from_dict` or directly
    (``System(groups=(Group(...), ...), rules={"Absol": {"colour": "white", ...}})``);
    every way validates and raises :class:`SystemValidationError` listing each
    problem with its path. ``rules`` and ``aliases`` are read-only mappings;
    change a system with its ``with_*`` / ``*_option`` edits, which return new
    systems. Equality compares content; ``hash()`` and :attr:`fingerprint`
    follow what changes scores.
    """

    groups: tuple[Group, ...]
    rules: Mapping[str, Mapping[str, tuple[int, ...]]]
    name: str = ""
    baseline_prompt: str = "{}"
    temperature: float | None = None
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    description: str = ""
    templates: tuple[str, ...] = ()
    """Prompt-ensembling templates for the ``ensemble`` method (empty: the method's own defaults)."""
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Derived values (fingerprint, compiled arrays, look-up indices); safe to keep since nothing changes."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        groups = _check_group_objects(self.groups, problems)
        built = _finish(
            groups,
            set(),
            self.rules,
            {"baseline_prompt": self.baseline_prompt, "temperature": self.temperature, "aliases": self.aliases,
             "name": self.name, "description": self.description, "templates": self.templates or None},
            problems,
        )
        if problems or built is None:
            raise SystemValidationError("<System>", problems)
        for key, value in built.items():
            object.__setattr__(self, "_cache" if key == "cache" else key, value)

    @classmethod
    def _make(
        cls,
        groups: tuple[Group, ...],
        rules: Mapping[str, Rule],
        name: str = "",
        baseline_prompt: str = "{}",
        temperature: float | None = None,
        aliases: Mapping[str, tuple[str, ...]] | None = None,
        description: str = "",
        templates: tuple[str, ...] = (),
        cache: dict[str, Any] | None = None,
    ) -> "System":
        """Assemble parts that are already valid (from the validator or an edit) without re-checking them."""
        system = object.__new__(cls)
        values = {
            "groups": groups,
            "rules": rules if isinstance(rules, MappingProxyType) else MappingProxyType(dict(rules)),
            "name": name,
            "baseline_prompt": baseline_prompt,
            "temperature": temperature,
            "aliases": MappingProxyType(dict(aliases or {})),
            "description": description,
            "templates": templates,
            "_cache": cache if cache is not None else {},
        }
        for key, value in values.items():
            object.__setattr__(system, key, value)
        return system

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path) -> "System":
        """Load and validate a ``.yaml``/``.yml``/``.json`` system file."""
        path = Path(path)
        source = str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise SystemValidationError(source, [f"cannot read file: {exc.strerror or exc}"]) from exc
        _check_utf8(raw, source)
        if path.suffix.lower() == ".json":
            text = raw.decode("utf-8-sig")
            del raw  # a large file: keep one copy of its text, not two
            data = _parse_json(text, source)
            del text
        else:
            data = _parse_yaml(raw, source)  # libyaml reads the bytes in place
            del raw
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
        if self.templates:
            out["templates"] = list(self.templates)
        groups: dict[str, Any] = {}
        for g in self.groups:
            entry: dict[str, Any] = {"prompt": g.prompt, "options": list(g.options)}
            if g.weight != 1.0:
                entry["weight"] = g.weight
            if g.description:
                entry["description"] = g.description
            groups[g.name] = entry
        out["groups"] = groups
        names = [g.name for g in self.groups]
        texts = [g.options for g in self.groups]
        rules: dict[str, Any] = {}
        for cls_name, rule in self.rules.items():
            rules[cls_name] = {
                gname: (opts[idx[0]] if len(idx) == 1 else [opts[i] for i in idx])
                for gname, opts, idx in zip(names, texts, _row(rule))
            }
        out["rules"] = rules
        if self.aliases:
            out["aliases"] = {k: list(v) for k, v in self.aliases.items()}
        return out

    def save(self, path: str | Path) -> None:
        """Write the canonical form as JSON (``.json``) or YAML (anything else)."""
        path = Path(path)
        data = self.to_dict()
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        else:
            dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
            text = yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True, width=100)
            path.write_text(text, encoding="utf-8")

    # -------------------------------------------------------------- properties
    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.rules)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    @property
    def n_prompts(self) -> int:
        """Q: the number of text prompts the chain-of-thought method embeds."""
        return sum(len(g.options) for g in self.groups)

    @property
    def fingerprint(self) -> str:
        """Short sha256 of everything that changes scores (not the name, descriptions or aliases).

        Covers group order, names, prompts, options and weights, every rule,
        the class order, the baseline prompt, the temperature and the ensemble
        templates (when set: a system without them keeps the fingerprint it had
        before they existed). Cached: the system is immutable.
        """
        cached = self._cache.get("fingerprint")
        if cached is None:
            head: tuple[Any, ...] = (
                "cotembed-system/1",
                self.baseline_prompt,
                self.temperature,
                tuple((g.name, g.prompt, g.options, g.weight) for g in self.groups),
            )
            if self.templates:
                head += (("templates", self.templates),)
            digest = hashlib.sha256(_canonical_bytes(head))
            digest.update(self._rules_digest())
            cached = self._cache["fingerprint"] = digest.hexdigest()[:16]
        return cached

    @property
    def hash(self) -> str:
        """The fingerprint, under the name outputs record it by (``system hash``)."""
        return self.fingerprint

    def _rules_digest(self) -> bytes:
        """Digest of class order and rows; edits that keep the rules reuse it."""
        cached = self._cache.get("rules_digest")
        if cached is None:
            digest = hashlib.sha256()
            for cls_name, rule in self.rules.items():
                digest.update(_canonical_bytes((cls_name, _row(rule))))
            cached = self._cache["rules_digest"] = digest.digest()
        return cached

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, System):
            return NotImplemented
        if "fingerprint" in self._cache and "fingerprint" in other._cache and self.fingerprint != other.fingerprint:
            return False
        return (
            self.groups == other.groups
            and self.baseline_prompt == other.baseline_prompt
            and self.temperature == other.temperature
            and self.templates == other.templates
            and self.name == other.name
            and self.description == other.description
            and dict(self.aliases) == dict(other.aliases)
            and self.class_names == other.class_names
            and (self.rules is other.rules or all(_row(a) == _row(b) for a, b in zip(self.rules.values(), other.rules.values())))
        )

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return (f"System({label}{len(self.groups)} groups, {len(self.rules)} classes, "
                f"{self.n_prompts} prompts, fingerprint={self.fingerprint})")

    def __reduce__(self) -> tuple[Any, ...]:
        # Read-only mapping proxies do not pickle; rebuild from plain parts (already valid).
        return (_restore, (self.groups, tuple(self.rules), tuple(_row(r) for r in self.rules.values()), self.name,
                           self.baseline_prompt, self.temperature, dict(self.aliases), self.description, self.templates))

    def __copy__(self) -> "System":
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> "System":
        return self

    # ------------------------------------------------------------ inspection
    def resolve_label(self, label: str) -> str | None:
        """Map a dataset label (class name or alias, case-insensitive) to a class name."""
        if label in self.rules:
            return label
        index = self._cache.get("labels")
        if index is None:
            classes: dict[str, str] = {}
            for cls_name in self.rules:
                classes.setdefault(cls_name.casefold().strip(), cls_name)
            aliases: dict[str, str] = {}
            for cls_name, names in self.aliases.items():
                for alias in names:
                    aliases.setdefault(alias.casefold().strip(), cls_name)
            index = self._cache["labels"] = (classes, aliases)
        folded = label.casefold().strip()
        return index[0].get(folded) or index[1].get(folded)

    def identical_rules(self) -> list[list[str]]:
        """Sets of classes whose rules are the same: CoT alone cannot separate them."""
        by_rule: dict[Row, list[str]] = {}
        for cls_name, rule in self.rules.items():
            by_rule.setdefault(_row(rule), []).append(cls_name)
        return [names for names in by_rule.values() if len(names) > 1]

    def summary(self) -> dict[str, Any]:
        """What ``cotembed validate`` reports: sizes, groups, ensemble templates (empty: defaults), hash and ties."""
        return {
            "name": self.name,
            "hash": self.hash,
            "n_groups": len(self.groups),
            "n_classes": len(self.rules),
            "n_prompts": self.n_prompts,
            "groups": [{"name": g.name, "prompt": g.prompt, "n_options": len(g.options), "weight": g.weight} for g in self.groups],
            "templates": list(self.templates),
            "identical_rules": self.identical_rules(),
        }

    def compile(self) -> CompiledSystem:
        """The arrays scoring needs; built once per system and shared (the arrays are read-only)."""
        compiled = self._cache.get("compiled")
        if compiled is None:
            compiled = self._cache["compiled"] = self._compile()
        return compiled

    def _compile(self) -> CompiledSystem:
        prompts: list[str] = []
        offsets = [0]
        for g in self.groups:
            prompts.extend(g.prompts())
            offsets.append(len(prompts))
        classes = self.class_names
        q_index: list[int] = []
        n_index: list[int] = []
        starts = offsets[:-1]
        for n, rule in enumerate(self.rules.values()):
            for start, chosen in zip(starts, _row(rule)):
                for i in chosen:
                    q_index.append(start + i)
                    n_index.append(n)
        q_weight = np.repeat(np.asarray([g.weight for g in self.groups], dtype=np.float32), np.diff(offsets))
        rule_matrix = np.zeros((len(prompts), len(classes)), dtype=np.float32)
        q = np.asarray(q_index, dtype=np.int64)
        rule_matrix[q, np.asarray(n_index, dtype=np.int64)] = q_weight[q]
        offsets_array = np.asarray(offsets, dtype=np.int64)
        rule_matrix.setflags(write=False)
        offsets_array.setflags(write=False)
        return CompiledSystem(
            prompts=tuple(prompts),
            offsets=offsets_array,
            rule_matrix=rule_matrix,
            class_names=classes,
            group_names=self.group_names,
            baseline_prompts=tuple(self.baseline_prompt.replace("{}", c, 1) for c in classes),
            templates=self.templates,
        )

    # ------------------------------------------------------------------ edits
    def replace_option(self, group: str, option: OptionRef, new_text: str) -> "System":
        """Change one option's text; rules keep pointing at the same index."""
        gi, g = self._group_at(group, "replace_option")
        i = self._option_at(g, option, "replace_option")
        new_group = self._changed_group(g, "replace_option", options=g.options[:i] + (new_text,) + g.options[i + 1:])
        return self._derive(groups=self.groups[:gi] + (new_group,) + self.groups[gi + 1:])

    def add_option(self, group: str, text: str) -> "System":
        """Append an option to a group; no class accepts it until a rule says so."""
        gi, g = self._group_at(group, "add_option")
        new_group = self._changed_group(g, "add_option", options=g.options + (text,))
        return self._derive(groups=self.groups[:gi] + (new_group,) + self.groups[gi + 1:])

    def remove_option(self, group: str, option: OptionRef) -> "System":
        """Drop an option; rules are re-indexed, and a class left with no option in the group is an error."""
        gi, g = self._group_at(group, "remove_option")
        removed = self._option_at(g, option, "remove_option")
        new_group = self._changed_group(g, "remove_option", options=g.options[:removed] + g.options[removed + 1:])
        remap: dict[tuple[int, ...], tuple[int, ...]] = {}
        orphans: list[str] = []
        rows: dict[str, Row] = {}
        for cls_name, rule in self.rules.items():
            row = _row(rule)
            chosen = row[gi]
            if chosen not in remap:
                remap[chosen] = tuple(i - (i > removed) for i in chosen if i != removed)
            new = remap[chosen]
            if not new:
                orphans.append(f"rules.{cls_name}.{g.name}: {_shown(g.options[removed])} is the class's only option in this group; "
                               "give it another option first")
            elif new != chosen:
                rows[cls_name] = row[:gi] + (new,) + row[gi + 1:]
        if orphans:
            raise SystemValidationError(self._edit_source("remove_option"), orphans)
        return self._derive(groups=self.groups[:gi] + (new_group,) + self.groups[gi + 1:], rows=rows)

    def with_rule(self, class_name: str, group: str, options: OptionRef | Sequence[OptionRef]) -> "System":
        """Set which option(s) one class accepts in one group."""
        return self._set_rules({class_name: {group: options}}, "with_rule")

    def with_rules(self, rules: Mapping[str, Mapping[str, OptionRef | Sequence[OptionRef]]]) -> "System":
        """Set options for several classes and groups at once; groups not named keep their options."""
        return self._set_rules(rules, "with_rules")

    def _set_rules(self, rules: Mapping[str, Mapping[str, Any]], edit: str) -> "System":
        index = self._group_index()
        unknown: list[str] = []
        problems: list[str] = []
        rows: dict[str, Row] = {}
        for cls_name, changes in rules.items():
            rule = self.rules.get(cls_name)
            if rule is None:
                unknown.append(f"unknown class {_shown(cls_name)}")
                continue
            if not isinstance(changes, Mapping):
                problems.append(f"rules.{cls_name}: must map each group to an option")
                continue
            row = list(_row(rule))
            for gname, value in changes.items():
                gi = index.get(gname)
                if gi is None:
                    unknown.append(f"unknown group {_shown(gname)} (groups are: {_listing(index)})")
                    continue
                chosen = _edit_options(self.groups[gi], value, f"rules.{cls_name}.{gname}", unknown, problems)
                if chosen is not None:
                    row[gi] = chosen
            rows[cls_name] = tuple(row)
        self._raise_edit_problems(edit, unknown, problems)
        return self._derive(rows=rows)

    def with_group_weights(self, weights: Mapping[str, float]) -> "System":
        """Change the weight of one or more groups (how much each answer counts)."""
        groups = list(self.groups)
        index = self._group_index()
        unknown = [f"unknown group {_shown(name)} (groups are: {_listing(index)})" for name in weights if name not in index]
        self._raise_edit_problems("with_group_weights", unknown, [])
        problems: list[str] = []
        for name, weight in weights.items():
            gi = index[name]
            value = _positive_number(weight, f"groups.{name}.weight", problems)
            if value is not None:
                groups[gi] = _trusted_group(groups[gi].name, groups[gi].prompt, groups[gi].options, value, groups[gi].description)
        self._raise_edit_problems("with_group_weights", [], problems)
        return self._derive(groups=tuple(groups))

    def with_temperature(self, temperature: float | None) -> "System":
        """Set the softmax temperature stored in the system (None: use the model's logit scale)."""
        if temperature is not None:
            problems: list[str] = []
            temperature = _positive_number(temperature, "temperature", problems)
            self._raise_edit_problems("with_temperature", [], problems)
        return self._derive(temperature=temperature)

    def with_baseline_prompt(self, prompt: str) -> "System":
        """Set the template the baseline method fills with each class name."""
        problems: list[str] = []
        _check_template(prompt, "baseline_prompt", problems)
        self._raise_edit_problems("with_baseline_prompt", [], problems)
        return self._derive(baseline_prompt=prompt)

    def with_templates(self, templates: Sequence[str] | None) -> "System":
        """Set the ``ensemble`` method's templates (None: back to the method's defaults)."""
        problems: list[str] = []
        checked = _build_templates(templates, problems)
        self._raise_edit_problems("with_templates", [], problems)
        return self._derive(templates=checked)

    def without_group(self, name: str) -> "System":
        """Drop a group and every rule's entry for it."""
        gi, _ = self._group_at(name, "without_group")
        if len(self.groups) == 1:
            raise SystemValidationError(self._edit_source("without_group"), [f"groups.{name}: a system needs at least one group"])
        groups = self.groups[:gi] + self.groups[gi + 1:]
        rows = {cls_name: _row(rule)[:gi] + _row(rule)[gi + 1:] for cls_name, rule in self.rules.items()}
        return self._derive(groups=groups, rows=rows, regroup=True)

    def with_group(
        self,
        group: Group,
        rules_for_group: Mapping[str, OptionRef | Sequence[OptionRef]],
        position: int | None = None,
    ) -> "System":
        """Add a group at ``position`` (default: last), with every class's option(s) in it."""
        if not isinstance(group, Group):
            raise InputError(f"with_group: expected a Group, got {type(group).__name__}")
        index = self._group_index()
        source = self._edit_source("with_group")
        if group.name in index:
            raise SystemValidationError(source, [f"groups.{group.name}: the system already has a group with this name"])
        at = len(self.groups) if position is None else position
        if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at <= len(self.groups):
            raise InputError(f"with_group: position must be between 0 and {len(self.groups)}, got {_shown(position)}")
        unknown = [f"unknown class {_shown(c)}" for c in rules_for_group if c not in self.rules]
        problems: list[str] = []
        chosen: dict[str, tuple[int, ...]] = {}
        for cls_name in self.rules:
            if cls_name not in rules_for_group:
                problems.append(f"rules.{cls_name}: missing group {_shown(group.name)}")
                continue
            value = _edit_options(group, rules_for_group[cls_name], f"rules.{cls_name}.{group.name}", unknown, problems)
            if value is not None:
                chosen[cls_name] = value
        self._raise_edit_problems("with_group", unknown, problems)
        groups = self.groups[:at] + (group,) + self.groups[at:]
        rows = {cls_name: _row(rule)[:at] + (chosen[cls_name],) + _row(rule)[at:] for cls_name, rule in self.rules.items()}
        return self._derive(groups=groups, rows=rows, regroup=True)

    # ------------------------------------------------------------ edit helpers
    def _group_index(self) -> Mapping[str, int]:
        index = self._cache.get("group_index")
        if index is None:
            index = self._cache["group_index"] = {g.name: i for i, g in enumerate(self.groups)}
        return index

    def _group_at(self, name: str, edit: str) -> tuple[int, Group]:
        index = self._group_index()
        gi = index.get(name) if isinstance(name, str) else None
        if gi is None:
            raise InputError(f"{edit} on {self._label()}: unknown group {_shown(name)} (groups are: {_listing(index)})")
        return gi, self.groups[gi]

    def _option_at(self, group: Group, option: OptionRef, edit: str) -> int:
        index = group._find(option)
        if index is None:
            raise InputError(f"{edit} on {self._label()}: group {_shown(group.name)}: {group._unknown(option)}")
        return index

    def _changed_group(self, group: Group, edit: str, **changes: Any) -> Group:
        try:
            return group._with(**changes)
        except SystemValidationError as exc:
            raise SystemValidationError(self._edit_source(edit), exc.problems) from None

    def _label(self) -> str:
        return repr(self.name) if self.name else "<unnamed system>"

    def _edit_source(self, edit: str) -> str:
        return f"{self._label()} after {edit}"

    def _raise_edit_problems(self, edit: str, unknown: list[str], problems: list[str]) -> None:
        if unknown:
            raise InputError(f"{edit} on {self._label()}: " + "; ".join(unknown))
        if problems:
            raise SystemValidationError(self._edit_source(edit), problems)

    def _derive(
        self,
        *,
        groups: tuple[Group, ...] | None = None,
        rows: Mapping[str, Row] | None = None,
        regroup: bool = False,
        **fields: Any,
    ) -> "System":
        """A new system from validated changes; unchanged parts (and their digests) are shared.

        ``rows`` replaces some classes' rows; ``regroup`` says the group names
        or order changed, so every rule needs the new group index.
        """
        new_groups = self.groups if groups is None else groups
        cache: dict[str, Any] = {}
        if regroup:
            index = {g.name: i for i, g in enumerate(new_groups)}
            cache["group_index"] = index
            rows = rows or {}
            rules: Mapping[str, Rule] = MappingProxyType(
                {c: Rule(index, rows[c] if c in rows else _row(r)) for c, r in self.rules.items()}
            )
        elif rows:
            cache["group_index"] = self._group_index()
            updated: dict[str, Rule] = dict(self.rules)  # type: ignore[arg-type]
            for cls_name, row in rows.items():
                updated[cls_name] = Rule(cache["group_index"], row)
            rules = MappingProxyType(updated)
        else:
            rules = self.rules  # type: ignore[assignment]
            for key in ("rules_digest", "group_index"):
                if key in self._cache:
                    cache[key] = self._cache[key]
        if "aliases" not in fields and "labels" in self._cache:  # classes never change in an edit
            cache["labels"] = self._cache["labels"]
        values: dict[str, Any] = {"name": self.name, "baseline_prompt": self.baseline_prompt, "temperature": self.temperature,
                                  "aliases": self.aliases, "description": self.description, "templates": self.templates}
        values.update(fields)
        return System._make(new_groups, rules, cache=cache, **values)


def _restore(groups: tuple[Group, ...], class_names: tuple[str, ...], rows: tuple[Row, ...], name: str,
             baseline_prompt: str, temperature: float | None, aliases: dict[str, tuple[str, ...]], description: str,
             templates: tuple[str, ...] = ()) -> System:
    index = {g.name: i for i, g in enumerate(groups)}
    rules = MappingProxyType({c: Rule(index, r) for c, r in zip(class_names, rows)})
    return System._make(groups, rules, name, baseline_prompt, temperature, aliases, description, templates,
                        cache={"group_index": index})


def _row(rule: Mapping[str, tuple[int, ...]]) -> Row:
    return rule.row  # type: ignore[attr-defined,no-any-return]


def _canonical_bytes(value: Any) -> bytes:
    """repr of nested tuples of str/int/float/None: unambiguous, and fast for large rows."""
    return (repr(value) + "\n").encode("utf-8", "surrogatepass")


QUOTE_LIMIT = 200
"""Longest quotation of a value in an error message: a huge value is cut, not echoed whole."""

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple = 3, 8, 8, 8
_REPR.maxset = _REPR.maxfrozenset = _REPR.maxdeque = 8
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = QUOTE_LIMIT


def _shown(value: Any, limit: int = QUOTE_LIMIT) -> str:
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


def _listing(names: Iterable[Any], limit: int = 12) -> str:
    items = list(names)
    texts = (str(n) for n in items[:limit])
    shown = ", ".join(text if len(text) <= 80 else text[:80] + "..." for text in texts)
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _edit_options(group: Group, value: Any, path: str, unknown: list[str], problems: list[str]) -> tuple[int, ...] | None:
    """Resolve an edit's option(s): unknown options go to ``unknown``, malformed values to ``problems``."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        problems.append(f"{path}: empty list of options")
        return None
    indices: list[int] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            problems.append(f"{path}: expected an option index, option text or a list of them, got {_shown(v)}")
            return None
        index = group._find(v)
        if index is None:
            unknown.append(f"{path}: {group._unknown(v)}")
            return None
        indices.append(index)
    if len(set(indices)) != len(indices):
        problems.append(f"{path}: the same option is listed twice")
        return None
    return tuple(sorted(indices))


# --------------------------------------------------------------------- parsing
def parse_system_text(text: str | bytes, source: str, json_format: bool = False) -> Any:
    """Parse YAML (a superset of JSON) or strict JSON, naming line numbers on failure.

    Duplicate mapping keys are reported (with their line in YAML) instead of
    silently keeping the last value; bytes that are not UTF-8 are reported as
    such. YAML goes through libyaml's event stream when it is available, so a
    large file never exists as a tree of nodes in memory.
    """
    if isinstance(text, bytes):
        _check_utf8(text, source)
    if json_format:
        return _parse_json(text.decode("utf-8-sig") if isinstance(text, bytes) else text, source)
    return _parse_yaml(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text, source)


def _check_utf8(data: bytes, source: str) -> None:
    """Raise a SystemValidationError naming the first byte that no UTF-8 text file holds.

    That is an invalid UTF-8 sequence or a NUL (valid UTF-8, but only binary
    files and UTF-16 have them). Decodes in chunks to keep memory flat.
    """
    nul = data.find(b"\x00")
    end = nul if nul >= 0 else len(data)
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)[:end]
    step = 1 << 20
    for start in range(0, max(end, 1), step):
        pending = len(decoder.getstate()[0])  # bytes of a character cut by the previous chunk
        try:
            decoder.decode(view[start:start + step], final=start + step >= end)
        except UnicodeDecodeError as exc:
            offset = start - pending + exc.start
            line = data.count(b"\n", 0, offset) + 1
            raise SystemValidationError(source, [
                f"not UTF-8 text: byte 0x{data[offset]:02x} at offset {offset} (line {line}) is not valid UTF-8; "
                "a system is a YAML or JSON text file"
            ]) from None
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise SystemValidationError(source, [
            f"not UTF-8 text: NUL byte at offset {nul} (line {line}); a system is a YAML or JSON text file"
        ])


def _parse_json(text: str, source: str) -> Any:
    duplicates: list[str] = []
    strings: dict[str, str] = {}

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # Share repeated string values (rules repeat option texts millions of times in big systems).
        obj = {k: (strings.setdefault(v, v) if v.__class__ is str else v) for k, v in pairs}
        if len(obj) != len(pairs):
            seen: set[str] = set()
            repeated = {k for k, _ in pairs if k in seen or seen.add(k)}  # type: ignore[func-returns-value]
            duplicates.extend(f"duplicate key {_shown(k)}" for k in sorted(repeated))
        return obj

    try:
        data = json.loads(text, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as exc:
        raise SystemValidationError(source, [f"line {exc.lineno}, column {exc.colno}: malformed JSON: {exc.msg}"]) from exc
    except RecursionError as exc:
        raise SystemValidationError(source, ["malformed JSON: nested too deeply"]) from exc
    if duplicates:
        raise SystemValidationError(source, duplicates)
    return data


class _PyParser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """PyYAML's pure-Python event parser, for when libyaml is not installed."""

    def __init__(self, stream: bytes):
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


_CParser: Any = getattr(getattr(yaml, "_yaml", None), "CParser", None) if getattr(yaml, "__with_libyaml__", False) else None
_YAML_PARSER: Callable[[bytes], Any] = _CParser or _PyParser
"""The event parser YAML systems are read with: libyaml's when present, else PyYAML's own."""


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader that reports duplicate mapping keys instead of silently keeping the last.

    Used only for YAML features the streaming reader leaves to PyYAML (merge
    keys ``<<``, tagged collections, complex keys): it builds a node tree first.
    """

    duplicates: list[str]


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue  # '<<': construct_mapping merges it
        key = loader.construct_object(key_node, deep=deep)
        try:
            if key in seen:
                loader.duplicates.append(f"line {key_node.start_mark.line + 1}: duplicate key {_shown(key)}")
            seen.add(key)
        except TypeError:
            pass  # unhashable: construct_mapping below reports it with its line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


class _NeedsComposer(Exception):
    """The streaming reader met a YAML feature it leaves to PyYAML's composer."""


_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAP_TAGS = frozenset({None, "!", "tag:yaml.org,2002:map"})
_SEQ_TAGS = frozenset({None, "!", "tag:yaml.org,2002:seq"})
_SEQ = object()  # marks a sequence frame on the key stack
_NO_KEY = object()  # marks a mapping frame waiting for its next key
_MISSING = object()


ALIAS_BUDGET = 100_000
"""How many nodes YAML aliases may add beyond the nodes the file itself spells out.

An alias (``*name``) stands for a copy of its anchor's whole value, so a few
hundred bytes of nested aliases ("billion laughs") stand for 10^9 values that
validation would walk and error messages would quote. A system uses aliases to
share an option list or a rule; past this budget the file is refused.
"""


class _AliasBomb(Exception):
    """Aliases stand for more nodes than the budget allows (or for a value holding itself)."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


def _alias_problem(expanded: int, line: int | None) -> str:
    where = f"line {line}: " if line else ""
    return (f"{where}YAML aliases expanded too much: they stand for more than {ALIAS_BUDGET:,} nodes beyond the file's own "
            f"(at least {expanded:,}); write the values out or share fewer, smaller anchors")


def _parse_yaml(data: bytes, source: str) -> Any:
    duplicates: list[str] = []
    try:
        try:
            result = _read_yaml_events(_YAML_PARSER(data), duplicates)
        except _NeedsComposer:
            duplicates.clear()
            loader = _UniqueKeyLoader(data)
            loader.duplicates = duplicates
            try:
                node = loader.get_single_node()
                _check_alias_budget(node)
                result = loader.construct_document(node) if node is not None else None
            finally:
                loader.dispose()
    except _AliasBomb as exc:
        raise SystemValidationError(source, [exc.problem]) from None
    except yaml.reader.ReaderError as exc:
        line = data.count(b"\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        where = f"line {line}: " if line else ""
        raise SystemValidationError(source, [f"{where}malformed YAML: {exc.reason} (character {_shown(exc.character)})"]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SystemValidationError(source, [f"{where}malformed YAML: {problem}"]) from exc
    except (ValueError, TypeError, RecursionError) as exc:  # the fallback loader's scalar constructors raise these raw
        raise SystemValidationError(source, [f"malformed YAML: {exc}"]) from exc
    if duplicates:
        raise SystemValidationError(source, duplicates)
    return result


def _check_alias_budget(root: yaml.Node | None) -> None:
    """Refuse a composed node graph whose aliases stand for too many nodes (or for a value holding itself).

    The composer shares an aliased node instead of copying it, so the graph is
    as small as the file; this counts the nodes its values would expand to,
    once per distinct node.
    """
    sizes: dict[int, int | None] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            known = sizes[key]
            if known is None:
                raise _AliasBomb(f"line {node.start_mark.line + 1}: a YAML alias refers to a value that holds it "
                                 "(a recursive structure); a system is a tree of values")
            return known
        sizes[key] = None
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        sizes[key] = total
        if total - len(sizes) > ALIAS_BUDGET:
            raise _AliasBomb(_alias_problem(total - len(sizes), node.start_mark.line + 1))
        return total

    if root is not None:
        size(root)


def _read_yaml_events(parser: Any, duplicates: list[str]) -> Any:
    """Build plain Python data straight from the parser's events (no node tree).

    Handles what system files use: mappings, sequences, plain/quoted/block
    scalars, explicit scalar tags, anchors and aliases. Repeated scalars are
    resolved once and shared (a large system repeats each option text many
    times). Anything else raises _NeedsComposer and the caller re-reads the text
    with the node-based loader.
    """
    try:
        get_event = parser.get_event
        get_event()  # StreamStartEvent
        event: Any = get_event()
        if event.__class__ is StreamEndEvent:
            return None
        resolve = yaml.resolver.Resolver().resolve
        constructor = yaml.constructor.SafeConstructor()
        plain: dict[str, Any] = {}
        quoted: dict[str, str] = {}
        anchors: dict[str, Any] = {}
        stack: list[Any] = []
        keys: list[Any] = []
        # Alias budget: `nodes` counts every value read, an alias as the nodes it stands for;
        # `sizes` holds each closed anchor's node count, `open_anchors` the anchored
        # collections still being read (depth, name, `nodes` at their start).
        nodes = expanded = 0
        sizes: dict[str, int] = {}
        open_anchors: list[tuple[int, str, int]] = []
        document_start = event.start_mark
        while True:
            event = get_event()
            kind = event.__class__
            nodes += 1
            if kind is ScalarEvent:
                tag = event.tag
                raw = event.value
                if tag is None or tag == "!":
                    if event.implicit[0]:  # plain: resolve null/bool/int/float/... once per distinct text
                        value = plain.get(raw, _MISSING)
                        if value is _MISSING:
                            value = plain[raw] = _construct_scalar(constructor, resolve(yaml.ScalarNode, raw, (True, False)), event)
                    else:
                        value = quoted.setdefault(raw, raw)
                else:
                    value = _construct_scalar(constructor, tag, event)
                if event.anchor is not None:
                    anchors[event.anchor] = value
                    sizes[event.anchor] = 1
            elif kind is MappingStartEvent:
                if event.tag not in _MAP_TAGS:
                    raise _NeedsComposer
                container: Any = {}
                if event.anchor is not None:
                    anchors[event.anchor] = container
                    open_anchors.append((len(stack), event.anchor, nodes - 1))
                stack.append(container)
                keys.append(_NO_KEY)
                continue
            elif kind is SequenceStartEvent:
                if event.tag not in _SEQ_TAGS:
                    raise _NeedsComposer
                container = []
                if event.anchor is not None:
                    anchors[event.anchor] = container
                    open_anchors.append((len(stack), event.anchor, nodes - 1))
                stack.append(container)
                keys.append(_SEQ)
                continue
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                nodes -= 1  # an end closes a node already counted
                value = stack.pop()
                keys.pop()
                if open_anchors and open_anchors[-1][0] == len(stack):
                    _, anchor, start = open_anchors.pop()
                    sizes[anchor] = nodes - start
            elif kind is AliasEvent:
                if event.anchor not in anchors:
                    raise yaml.composer.ComposerError(None, None, f"found undefined alias {_shown(event.anchor)}", event.start_mark)
                size = sizes.get(event.anchor)
                if size is None:
                    raise _AliasBomb(f"line {event.start_mark.line + 1}: the YAML alias *{_shown(event.anchor)[1:-1]} refers to "
                                     "a value that holds it (a recursive structure); a system is a tree of values")
                nodes += size - 1
                expanded += size - 1
                if expanded > ALIAS_BUDGET:
                    raise _AliasBomb(_alias_problem(expanded, event.start_mark.line + 1))
                value = anchors[event.anchor]
            else:
                raise _NeedsComposer
            if not stack:
                break
            key = keys[-1]
            if key is _SEQ:
                stack[-1].append(value)
            elif key is _NO_KEY:
                try:
                    present = value in stack[-1]
                except TypeError:
                    raise _NeedsComposer from None  # a collection as a key
                if present:
                    duplicates.append(f"line {event.start_mark.line + 1}: duplicate key {_shown(value)}")
                keys[-1] = value
            else:
                stack[-1][key] = value
                keys[-1] = _NO_KEY
        event = get_event()
        if event.__class__ is not DocumentEndEvent:
            raise _NeedsComposer
        event = get_event()
        if event.__class__ is DocumentStartEvent:
            raise yaml.composer.ComposerError("expected a single document in the stream", document_start,
                                              "but found another document", cast(Any, event).start_mark)
        return value
    finally:
        parser.dispose()


def _construct_scalar(constructor: yaml.constructor.SafeConstructor, tag: str, event: Any) -> Any:
    if tag == _MERGE_TAG:
        raise _NeedsComposer
    node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
    try:
        return constructor.construct_object(node, deep=True)
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. a plain 2024-13-45 reads as a bad date
        raise yaml.constructor.ConstructorError(None, None, f"cannot read {_shown(event.value)} as {tag.rsplit(':', 1)[-1]}: {exc}",
                                                event.start_mark) from exc
    finally:
        constructor.constructed_objects.clear()


# ------------------------------------------------------------------ validation
def _pick(data: Mapping[str, Any], keys: Sequence[str], what: str, problems: list[str]) -> Any:
    """The section under whichever accepted key is present; _MISSING (reported) when none is."""
    present = [k for k in keys if k in data]
    if not present:
        problems.append(f"missing {what} (expected one of: {', '.join(keys)})")
        return _MISSING
    if len(present) > 1:
        problems.append(f"{what} given twice ({' and '.join(present)}); keep one")
    return data[present[0]]


SCALE_RANGE = (1e-30, 1e30)
"""Weights and temperatures outside this range would overflow or vanish in float32 scores."""


def _positive_number(value: Any, path: str, problems: list[str]) -> float | None:
    """A weight or temperature as a float; None (and a problem naming ``path``) when it is unusable."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        problems.append(f"{path}: must be a number, got {_shown(value)}")
        return None
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not (number > 0 and math.isfinite(number)):
        problems.append(f"{path}: must be a positive finite number, got {_shown(value)}")
        return None
    low, high = SCALE_RANGE
    if not low <= number <= high:
        problems.append(f"{path}: must be between {low:g} and {high:g} (scores are float32), got {_shown(value)}")
        return None
    return number


def _check_template(prompt: Any, path: str, problems: list[str]) -> bool:
    if not isinstance(prompt, str):
        problems.append(f"{path}: must be a string with one '{{}}', got {_shown(prompt)}")
        return False
    count = prompt.count("{}")
    if count != 1:
        problems.append(f"{path}: prompt must contain exactly one '{{}}' (found {count}): {_shown(prompt)}")
        return False
    return True


def _group_problems(name: Any, prompt: Any, options: Any, weight: Any, description: Any) -> list[str]:
    """Every problem of one group's fields, each named by its path (``groups.<name>.<field>``)."""
    problems: list[str] = []
    if not isinstance(name, str) or not name.strip():
        problems.append(f"groups: a group name must be a non-empty string, got {_shown(name)}")
    path = f"groups.{name}"
    _check_template(prompt, f"{path}.prompt", problems)
    if not isinstance(options, (list, tuple)) or not options:
        problems.append(f"{path}.options: must be a non-empty list")
    else:
        seen: dict[str, int] = {}
        for i, opt in enumerate(options):
            if not isinstance(opt, str) or not opt.strip():
                problems.append(f"{path}.options[{i}]: option must be a non-empty string, got {_shown(opt)}")
            elif opt in seen:
                problems.append(f"{path}.options[{i}]: duplicate option {_shown(opt)} (same as options[{seen[opt]}])")
            else:
                seen[opt] = i
    _positive_number(weight, f"{path}.weight", problems)
    if not isinstance(description, str):
        problems.append(f"{path}.description: must be a string, got {_shown(description)}")
    return problems


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
    found = _group_problems(gname, spec.get("prompt", "{}"), spec.get("options"), spec.get("weight", 1.0),
                            spec.get("description", ""))
    problems.extend(found)
    if len(problems) > before:
        return None
    return _trusted_group(gname, spec["prompt"], tuple(spec["options"]), spec.get("weight", 1.0), spec.get("description", ""))


def _check_group_objects(groups: Any, problems: list[str]) -> list[Group]:
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


def _build(data: Any, problems: list[str]) -> System | None:
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
    if raw_groups is not _MISSING:
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
    built = _finish(groups, broken, raw_rules, fields, problems)
    if problems or built is None:
        return None
    return System._make(**built)


def _finish(groups: list[Group] | None, broken: set[str], raw_rules: Any, fields: Mapping[str, Any],
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
        classes = {str(c) for c in raw_rules}
    elif raw_rules is not _MISSING:
        problems.append("rules: must be a mapping of class name to its options per group")

    baseline_prompt = fields["baseline_prompt"]
    _check_template(baseline_prompt, "baseline_prompt", problems)
    temperature = fields["temperature"]
    if temperature is not None:
        temperature = _positive_number(temperature, "temperature", problems)
    aliases = _build_aliases(fields["aliases"], classes, problems)
    name = fields["name"]
    if not isinstance(name, str):
        problems.append(f"name: must be a string, got {_shown(name)}")
    description = fields["description"]
    if not isinstance(description, str):
        problems.append(f"description: must be a string, got {_shown(description)}")
    templates = _build_templates(fields["templates"], problems)
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
            problems.append(f"rules: a class name must be a non-empty string, got {_shown(raw_name)}")
            continue
        if key in folded:
            problems.append(f"rules.{cls_name}: duplicate class (same as {_shown(folded[key])})")
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
        problems.append(f"{path}: expected an option index or text, got {_shown(value)}")
    elif isinstance(value, int):
        if 0 <= value < n:
            return value
        problems.append(f"{path}: option {value} out of range (group has {n} options)")
    elif isinstance(value, str):
        if value in group.options:
            return group.options.index(value)
        problems.append(f"{path}: option {_shown(value)} is not one of the group's options")
    else:
        problems.append(f"{path}: expected an option index, option text or a list of them, got {_shown(value)}")
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
            problems.append(f"{path}.{gname}: unknown group (groups are: {_listing(index)})")
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
            problems.append(f"{path}: missing group {_shown(gname)}")
    if len(problems) > before:
        return None
    return tuple(resolved[g] for g in index)


def _build_templates(raw: Any, problems: list[str]) -> tuple[str, ...]:
    """The ``templates`` field: None (absent) is no templates; given, a non-empty list of distinct ones."""
    if raw is None:
        return ()
    if isinstance(raw, str) or not isinstance(raw, (list, tuple)):
        problems.append(f"templates: must be a list of prompt templates with one '{{}}' each, got {_shown(raw)}")
        return ()
    if not raw:
        problems.append("templates: empty list; leave the field out (or set None) to use the ensemble method's defaults")
        return ()
    before = len(problems)
    seen: dict[str, int] = {}
    for i, template in enumerate(raw):
        if not _check_template(template, f"templates[{i}]", problems):
            continue
        if template in seen:
            problems.append(f"templates[{i}]: duplicate template {_shown(template)} (same as templates[{seen[template]}])")
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
