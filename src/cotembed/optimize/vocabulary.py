"""Candidate wordings for options: what the ``reword`` proposers may try.

A vocabulary file is YAML (or JSON) mapping each group to either

* a mapping ``option -> [wordings]``: other ways to say that option (the option and
  its wordings are interchangeable; whichever of them the system uses now, the
  others are its candidates), or
* a list ``[wordings]``: words any option of the group may take (the rules of the
  group are then re-fitted, since the word may fit another option's classes).

For example::

    colour:
      crimson: [scarlet, red]       # per option
      tangerine: [amber, orange]
    scene: [the clouds, a meadow, the ocean]   # any option of the group

The file is checked against the starting system: unknown groups, entries that match
no option, and non-text wordings are errors naming the file and the entry. Wordings
an LLM proposes during a run are added with :meth:`Vocabulary.extended`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from cotembed.errors import InputError, SystemValidationError
from cotembed.system import System, parse_system_text


@dataclass(frozen=True)
class Vocabulary:
    """Per group: sets of interchangeable wordings (``synonyms``) and free wordings (``free``)."""

    synonyms: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    free: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = "<vocabulary>"

    def __bool__(self) -> bool:
        return any(self.synonyms.values()) or any(self.free.values())

    @property
    def n_wordings(self) -> int:
        return sum(len(s) for sets in self.synonyms.values() for s in sets) + sum(len(w) for w in self.free.values())

    def alternatives(self, group: str, option: str) -> tuple[str, ...]:
        """Wordings interchangeable with ``option`` (those in its synonym set, itself excluded)."""
        out: list[str] = []
        for words in self.synonyms.get(group, ()):
            if option in words:
                out.extend(w for w in words if w != option)
        return tuple(dict.fromkeys(out))

    def free_words(self, group: str) -> tuple[str, ...]:
        return tuple(self.free.get(group, ()))

    def extended(self, group: str, option: str | None, wordings: Sequence[str]) -> "Vocabulary":
        """A copy with more wordings: for one option (joining its synonym set) or free for the group."""
        words = tuple(dict.fromkeys(w.strip() for w in wordings if isinstance(w, str) and w.strip()))
        if not words:
            return self
        synonyms = {g: list(sets) for g, sets in self.synonyms.items()}
        free = {g: tuple(ws) for g, ws in self.free.items()}
        if option is None:
            free[group] = tuple(dict.fromkeys((*free.get(group, ()), *words)))
        else:
            sets = synonyms.setdefault(group, [])
            for i, s in enumerate(sets):
                if option in s:
                    sets[i] = tuple(dict.fromkeys((*s, *words)))
                    break
            else:
                sets.append(tuple(dict.fromkeys((option, *words))))
        return Vocabulary({g: tuple(s) for g, s in synonyms.items()}, free, self.source)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for group in dict.fromkeys((*self.synonyms, *self.free)):
            entry: dict[str, Any] = {}
            for words in self.synonyms.get(group, ()):
                entry[words[0]] = list(words[1:])
            if group in self.free and entry:
                entry["*"] = list(self.free[group])
                out[group] = entry
            elif group in self.free:
                out[group] = list(self.free[group])
            else:
                out[group] = entry
        return out

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path, system: System) -> "Vocabulary":
        """Read and check a vocabulary file against ``system`` (every problem listed at once)."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise InputError(f"{path}: cannot read the vocabulary ({exc.strerror or exc})") from None
        try:
            data = parse_system_text(raw, str(path), json_format=path.suffix.lower() == ".json")
        except SystemValidationError as exc:  # the parser speaks of systems; this is a vocabulary
            raise InputError(f"invalid vocabulary {path}: " + "; ".join(exc.problems)) from None
        return cls.from_dict(data, system, str(path))

    @classmethod
    def from_dict(cls, data: Any, system: System, source: str = "<vocabulary>") -> "Vocabulary":
        problems: list[str] = []
        if not isinstance(data, Mapping) or not data:
            raise InputError(f"{source}: a vocabulary maps each group to its candidate wordings (a mapping option -> list, or a list)")
        groups = {g.name: g for g in system.groups}
        synonyms: dict[str, tuple[tuple[str, ...], ...]] = {}
        free: dict[str, tuple[str, ...]] = {}
        for gname, entry in data.items():
            if gname not in groups:
                problems.append(f"{gname}: not a group of {system.name or 'the system'} (groups are: {', '.join(groups)})")
                continue
            options = groups[gname].options
            if isinstance(entry, list):
                free[gname] = _wordings(entry, f"{gname}", problems)
                continue
            if not isinstance(entry, Mapping):
                problems.append(f"{gname}: expected a mapping option -> [wordings] or a list of wordings, got {type(entry).__name__}")
                continue
            sets: list[tuple[str, ...]] = []
            claimed: dict[str, str] = {}
            for key, words in entry.items():
                path = f"{gname}.{key}"
                if key == "*":  # free wordings next to per-option ones
                    free[gname] = _wordings(words, path, problems) if isinstance(words, list) else ()
                    if not isinstance(words, list):
                        problems.append(f"{path}: expected a list of wordings")
                    continue
                if not isinstance(key, str) or not key.strip():
                    problems.append(f"{path}: an option key must be non-empty text")
                    continue
                if not isinstance(words, list):
                    problems.append(f"{path}: expected a list of wordings, got {type(words).__name__}")
                    continue
                members = tuple(dict.fromkeys((key, *_wordings(words, path, problems))))
                matched = [o for o in options if o in members]
                if not matched:
                    problems.append(f"{path}: matches no option of group {gname!r} (neither the key nor a wording is one of: "
                                    f"{', '.join(repr(o) for o in options)})")
                    continue
                if len(matched) > 1:
                    problems.append(f"{path}: matches several options of {gname!r} ({', '.join(map(repr, matched))}); "
                                    "an entry is the wordings of one option")
                    continue
                if matched[0] in claimed:
                    problems.append(f"{path}: option {matched[0]!r} already has an entry ({claimed[matched[0]]}); merge the two lists")
                    continue
                claimed[matched[0]] = path
                sets.append(members)
            synonyms[gname] = tuple(sets)
        if problems:
            listing = "\n".join(f"  - {p}" for p in problems)
            raise InputError(f"invalid vocabulary {source}: {len(problems)} problem(s)\n{listing}")
        vocabulary = cls(synonyms, free, source)
        if not vocabulary:
            raise InputError(f"{source}: the vocabulary holds no wordings")
        return vocabulary


def _wordings(values: Any, path: str, problems: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for i, w in enumerate(values):
        if not isinstance(w, str) or not w.strip():
            problems.append(f"{path}[{i}]: a wording must be non-empty text, got {w!r}")
        elif "\n" in w:
            problems.append(f"{path}[{i}]: a wording must be one line, got {w!r}")
        else:
            out.append(w.strip())
    return tuple(dict.fromkeys(out))


__all__ = ["Vocabulary"]
