"""The System: a validated, immutable classification system (its edits live in :mod:`~cotembed.system._edits`).

A :class:`System` is immutable and hashable. Its :attr:`~System.fingerprint`
covers exactly what changes scores, so results, caches and optimisers can key
on it. Edits (``replace_option``, ``with_rule``, ``without_group``, ...) return
new, validated systems and re-check only what they touch, so a search can make
thousands of them. Rules are stored as rows aligned with the groups: cheap to
copy, compare, hash and compile.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from cotembed._io import atomic_write
from cotembed.errors import CotembedError, SystemValidationError
from cotembed.system._compile import CompiledSystem, compile_system
from cotembed.system._edits import SystemEdits
from cotembed.system._parse import check_utf8, parse_json, parse_yaml
from cotembed.system._parts import (
    Group,
    Row,
    Rule,
    bounded,
    row_of,
)
from cotembed.system._validate import (
    check_group_objects,
    check_parts,
    parts_from_dict,
)


@dataclass(frozen=True, eq=False, repr=False)
class System(SystemEdits):
    """A validated, immutable classification system.

    Build with :meth:`load`, :meth:`from_dict` or directly
    (``System(groups=(Group(...), ...), rules={"Absol": {"colour": "white", ...}})``);
    every way validates and raises :class:`SystemValidationError` listing each
    problem with its path. ``rules`` and ``aliases`` are read-only mappings;
    change a system with its ``with_*`` / ``*_option`` edits, which return new
    systems. Equality compares content; ``hash()`` and :attr:`fingerprint`
    follow what changes scores.

    Parameters
    ----------
    groups : tuple of Group
        The attribute questions: each a prompt template with ``{}`` and its options.
    rules : Mapping[str, Mapping[str, option or list of options]]
        For each class, the option(s) it matches in each group, by index or text.
    name : str, default ""
        A display name, recorded in outputs.
    baseline_prompt : str, default "{}"
        The template the baseline method fills with each class name.
    temperature : float or None, default None
        Softmax temperature; None leaves it to the caller or the model's logit scale.
    aliases : Mapping[str, tuple of str], default {}
        Other names a label may use for a class (matched case-insensitively).
    description : str, default ""
        Free text kept with the system.
    templates : tuple of str, default ()
        Prompt-ensembling templates for the ``ensemble`` method.

    Examples
    --------
    >>> from cotembed import System
    >>> system = System.from_dict({"groups": {"colour": {"prompt": "a {} bird", "options": ["red", "blue"]}},
    ...                            "rules": {"robin": {"colour": "red"}, "jay": {"colour": "blue"}}})
    >>> system.with_rule("jay", "colour", ["red", "blue"]).rules["jay"]["colour"]
    (0, 1)
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
        groups = check_group_objects(self.groups, problems)
        built = check_parts(
            groups,
            set(),
            self.rules,
            {"baseline_prompt": self.baseline_prompt, "temperature": self.temperature, "aliases": self.aliases,
             "name": self.name, "description": self.description, "templates": self.templates or None},
            problems,
        )
        if problems or built is None:
            raise SystemValidationError("<System>", bounded(problems))
        # The validator normalises (rules become read-only Rule views, weights floats): store
        # its values. A frozen dataclass forbids setattr; its __dict__ is the documented way in.
        self.__dict__.update(built, _cache=built.pop("cache"))

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
        system.__dict__.update({
            "groups": groups,
            "rules": rules if isinstance(rules, MappingProxyType) else MappingProxyType(dict(rules)),
            "name": name,
            "baseline_prompt": baseline_prompt,
            "temperature": temperature,
            "aliases": MappingProxyType(dict(aliases or {})),
            "description": description,
            "templates": templates,
            "_cache": cache if cache is not None else {},
        })
        return system

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path) -> "System":
        """Load and validate a ``.yaml``/``.yml``/``.json`` system file.

        Parameters
        ----------
        path : str or Path
            The system file; the seed's keys (``classification_cot``, ``pokemon_rules``)
            and the canonical ones (``groups``, ``rules``) are both accepted.

        Raises
        ------
        SystemValidationError
            The file cannot be read or parsed, or is not a valid system; every problem
            is listed with its path (``rules.Absol.colour: ...``).
        """
        path = Path(path)
        source = str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise SystemValidationError(source, [f"cannot read file: {exc.strerror or exc}"]) from exc
        check_utf8(raw, source)
        if path.suffix.lower() == ".json":
            text = raw.decode("utf-8-sig")
            del raw  # a large file: keep one copy of its text, not two
            data = parse_json(text, source)
            del text
        else:
            data = parse_yaml(raw, source)  # libyaml reads the bytes in place
            del raw
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> "System":
        """Validate a dict in the seed's shape or the canonical one and build a System.

        Parameters
        ----------
        data : dict
            The parsed system (as :meth:`load` reads it from a file).
        source : str, default "<dict>"
            Where the dict came from, named in validation errors.
        """
        problems: list[str] = []
        parts = parts_from_dict(data, problems)
        if problems or parts is None:
            raise SystemValidationError(source, bounded(problems))
        return cls._make(**parts)

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
            if g.none_option is not None:
                entry["none_option"] = g.none_option
            groups[g.name] = entry
        out["groups"] = groups
        names = [g.name for g in self.groups]
        texts = [g.options for g in self.groups]
        rules: dict[str, Any] = {}
        for cls_name, rule in self.rules.items():
            rules[cls_name] = {
                gname: (opts[idx[0]] if len(idx) == 1 else [opts[i] for i in idx])
                for gname, opts, idx in zip(names, texts, row_of(rule))
            }
        out["rules"] = rules
        if self.aliases:
            out["aliases"] = {k: list(v) for k, v in self.aliases.items()}
        return out

    def render(self, suffix: str = ".yaml", header: str = "") -> str:
        """The canonical text for a ``.json`` file or a YAML one (any other suffix).

        ``header`` (YAML comment lines, each starting with ``#``) leads a YAML file;
        JSON has no comments, so a JSON file has none.
        """
        data = self.to_dict()
        if suffix.lower() == ".json":
            return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        return header + yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True, width=100)

    def save(self, path: str | Path, header: str = "", verify: bool = False) -> None:
        """Write :meth:`render`'s text to ``path`` atomically: the old file or the whole new one, never half.

        ``verify`` reads the written file back first and writes nothing unless it
        is this system (for drafts from an LLM or a search: a check that the file
        says what the run found). OSError propagates for the caller to name the flag.

        Parameters
        ----------
        path : str or Path
            Target file; its suffix picks the format (``.json``, else YAML).
        header : str, default ""
            A comment written at the top of a YAML file (ignored for JSON).
        verify : bool, default False
            Read the written text back and keep it only if it equals this system.
        """
        path = Path(path)

        def reads_back(written: Path) -> None:
            if type(self).load(written) != self:
                raise CotembedError(f"{path}: the written system did not read back the same; nothing was written")

        atomic_write(path, self.render(path.suffix, header), check=reads_back if verify else None)

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
        the class order, the baseline prompt, the temperature, the ensemble
        templates and the groups' none options (when set: a system without them
        keeps the fingerprint it had before they existed). Cached: the system is immutable.
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
            nones = tuple((g.name, g.none_option) for g in self.groups if g.none_option is not None)
            if nones:  # like templates: a system without them keeps its fingerprint
                head += (("none_options", nones),)
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
                digest.update(_canonical_bytes((cls_name, row_of(rule))))
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
            and (self.rules is other.rules or all(row_of(a) == row_of(b) for a, b in zip(self.rules.values(), other.rules.values())))
        )

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return (f"System({label}{len(self.groups)} groups, {len(self.rules)} classes, "
                f"{self.n_prompts} prompts, fingerprint={self.fingerprint})")

    def __reduce__(self) -> tuple[Any, ...]:
        # Read-only mapping proxies do not pickle; rebuild from plain parts (already valid).
        return (_restore, (self.groups, tuple(self.rules), tuple(row_of(r) for r in self.rules.values()), self.name,
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
            by_rule.setdefault(row_of(rule), []).append(cls_name)
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
            compiled = self._cache["compiled"] = compile_system(self.groups, self.rules, self.baseline_prompt, self.templates)
        return compiled

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
                {c: Rule(index, rows[c] if c in rows else row_of(r)) for c, r in self.rules.items()}
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


def _canonical_bytes(value: Any) -> bytes:
    """repr of nested tuples of str/int/float/None: unambiguous, and fast for large rows."""
    return (repr(value) + "\n").encode("utf-8", "surrogatepass")
