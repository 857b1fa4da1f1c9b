"""Static diagnostics of a system, no model: what its rules can tell apart at best.

Classes no question separates, pairs one question separates, unused options, how
much each group tells (entropy) and repeats another (normalised mutual
information), and the ceiling accuracy of perfect answers. The definitions are in
:mod:`cotembed.inspection`'s docstring.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cotembed.inspection._suggest import Suggestion, static_suggestions
from cotembed.system import System

REDUNDANT_NMI = 0.9
"""Two groups with at least this normalised mutual information largely repeat each other."""
LISTED_PAIRS = 1000
"""At most this many fragile (and inseparable) pairs are listed; the counts are always exact."""
CEILING_SAMPLES = 256
"""Oracle answer combinations enumerated per class; above this they are sampled (seeded)."""


# ---------------------------------------------------------------- structure
class Structure:
    """A system's rules as per-group membership matrices (N classes x options)."""

    def __init__(self, system: System):
        compiled = system.compile()
        self.system = system
        self.classes = compiled.class_names
        self.groups = system.groups
        self.offsets = compiled.offsets
        member = compiled.rule_matrix > 0  # (Q, N)
        self.member = [member[self.offsets[g]: self.offsets[g + 1]].T.copy() for g in range(len(self.groups))]
        self.sizes = [m.sum(axis=1) for m in self.member]  # options each class accepts, per group

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def options_of(self, g: int, c: int) -> list[str]:
        return [self.groups[g].options[j] for j in np.flatnonzero(self.member[g][c])]

    def partition(self, g: int) -> np.ndarray:
        """p_g(j): the share of classes in each option (fractional for multi-option rules)."""
        weights = self.member[g] / self.sizes[g][:, None]
        coverage: np.ndarray = weights.sum(axis=0) / self.n_classes
        return coverage

    def separation_counts(self, rows: slice) -> np.ndarray:
        """(rows, N): how many groups separate each class in ``rows`` from every class."""
        counts = np.zeros((rows.stop - rows.start, self.n_classes), dtype=np.int32)
        for m in self.member:
            overlap = m[rows].astype(np.float32) @ m.T.astype(np.float32)
            counts += overlap == 0
        return counts


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) if len(p) else 0.0


def _nmi(s: Structure, g: int, h: int, entropies: list[float]) -> float:
    wg = s.member[g] / s.sizes[g][:, None]
    wh = s.member[h] / s.sizes[h][:, None]
    joint = (wg.T @ wh) / s.n_classes
    pg, ph = joint.sum(axis=1), joint.sum(axis=0)
    nz = joint > 0
    mutual = float((joint[nz] * np.log2(joint[nz] / np.outer(pg, ph)[nz])).sum())
    mean_h = (entropies[g] + entropies[h]) / 2
    return 1.0 if mean_h == 0 else max(0.0, min(1.0, mutual / mean_h))


def _ceiling(s: Structure, seed: int = 0) -> np.ndarray:
    """Per class: E[1 / #classes tied with it] when every question is answered right (see module doc)."""
    if all((sizes == 1).all() for sizes in s.sizes):
        # One option per rule: the oracle's answers are the class's rule, so the tie is its identical-rule set.
        rows = np.stack([m.argmax(axis=1) for m in s.member], axis=1)
        _, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
        return 1.0 / counts[inverse.reshape(-1)]
    rng = np.random.default_rng(seed)
    out = np.empty(s.n_classes)
    for c in range(s.n_classes):
        accepted = [np.flatnonzero(m[c]) for m in s.member]
        total = math.prod(len(a) for a in accepted)
        if total <= CEILING_SAMPLES:
            combos = np.asarray(list(itertools.product(*accepted)), dtype=np.int64).reshape(-1, len(accepted))
        else:
            combos = np.stack([rng.choice(a, CEILING_SAMPLES) for a in accepted], axis=1)
        fits = np.ones((len(combos), s.n_classes), dtype=bool)
        for g, m in enumerate(s.member):
            fits &= m[:, combos[:, g]].T
        out[c] = float(np.mean(1.0 / fits.sum(axis=1)))
    return out


# ------------------------------------------------------------------- static
@dataclass
class GroupInfo:
    name: str
    n_options: int
    n_used: int
    entropy_bits: float
    max_bits: float
    """The most a group with this many options could tell: min(log2 options, log2 classes)."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "n_options": self.n_options, "n_used": self.n_used,
                "entropy_bits": self.entropy_bits, "max_bits": self.max_bits}


@dataclass
class StaticReport:
    """What the rules alone can and cannot do; see the module docstring for the definitions."""

    system: dict[str, Any]
    identical: list[list[str]]
    inseparable: list[tuple[str, str]]
    n_inseparable: int
    fragile: list[dict[str, Any]]
    n_fragile: int
    fragile_by_group: dict[str, int]
    unused_options: dict[str, list[str]]
    single_class_options: dict[str, list[dict[str, str]]]
    groups: list[GroupInfo]
    class_entropy_bits: float
    redundancy: list[list[float]]
    redundant_pairs: list[dict[str, Any]]
    ceiling: float
    ceiling_per_class: dict[str, float]
    suggestions: list[Suggestion] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "identical_rules": self.identical,
            "inseparable_pairs": [list(p) for p in self.inseparable],
            "n_inseparable_pairs": self.n_inseparable,
            "fragile_pairs": self.fragile,
            "n_fragile_pairs": self.n_fragile,
            "fragile_pairs_by_group": self.fragile_by_group,
            "unused_options": self.unused_options,
            "single_class_options": self.single_class_options,
            "groups": [g.to_dict() for g in self.groups],
            "class_entropy_bits": self.class_entropy_bits,
            "redundancy": {"groups": [g.name for g in self.groups], "nmi": self.redundancy},
            "redundant_pairs": self.redundant_pairs,
            "ceiling": self.ceiling,
            "ceiling_per_class": self.ceiling_per_class,
            "suggestions": [s.to_dict() for s in self.suggestions],
        }


def static_report(system: System, *, redundant_nmi: float = REDUNDANT_NMI, listed_pairs: int = LISTED_PAIRS) -> StaticReport:
    """Everything that follows from the rules alone (no model, no data)."""
    s = Structure(system)
    names = s.classes
    identical = system.identical_rules()
    tied = {c for tie in identical for c in tie}

    inseparable: list[tuple[str, str]] = []
    fragile: list[dict[str, Any]] = []
    n_fragile = n_inseparable = 0
    by_group = dict.fromkeys((g.name for g in s.groups), 0)
    block = 512
    for start in range(0, s.n_classes, block):
        rows = slice(start, min(start + block, s.n_classes))
        counts = s.separation_counts(rows)
        for i, j in zip(*np.nonzero(counts <= 1)):
            a, b = start + int(i), int(j)
            if b <= a:
                continue
            if counts[i, j] == 0:
                if not (names[a] in tied and names[b] in tied and _same_rule(system, names[a], names[b])):
                    n_inseparable += 1
                    if len(inseparable) < listed_pairs:
                        inseparable.append((names[a], names[b]))
                continue
            n_fragile += 1
            g = next(g for g, m in enumerate(s.member) if not (m[a] & m[b]).any())
            by_group[s.groups[g].name] += 1
            if len(fragile) < listed_pairs:
                fragile.append({"a": names[a], "b": names[b], "group": s.groups[g].name,
                                "a_options": s.options_of(g, a), "b_options": s.options_of(g, b)})

    unused: dict[str, list[str]] = {}
    single: dict[str, list[dict[str, str]]] = {}
    infos: list[GroupInfo] = []
    entropies: list[float] = []
    for g, group in enumerate(s.groups):
        users = s.member[g].sum(axis=0)
        if (users == 0).any():
            unused[group.name] = [group.options[j] for j in np.flatnonzero(users == 0)]
        only = np.flatnonzero(users == 1)
        if len(only):
            single[group.name] = [{"option": group.options[j], "class": names[int(np.flatnonzero(s.member[g][:, j])[0])]} for j in only]
        h = _entropy(s.partition(g))
        entropies.append(h)
        infos.append(GroupInfo(group.name, len(group.options), int((users > 0).sum()), h,
                               min(math.log2(len(group.options)), math.log2(s.n_classes))))
    n_groups = len(s.groups)
    nmi = [[1.0] * n_groups for _ in range(n_groups)]
    for g in range(n_groups):
        for h in range(g + 1, n_groups):
            nmi[g][h] = nmi[h][g] = _nmi(s, g, h, entropies)
    redundant = [{"a": s.groups[g].name, "b": s.groups[h].name, "nmi": nmi[g][h]}
                 for g in range(n_groups) for h in range(g + 1, n_groups) if nmi[g][h] >= redundant_nmi]
    ceiling = _ceiling(s)
    report = StaticReport(
        system={"name": system.name, "hash": system.fingerprint, "n_groups": n_groups, "n_classes": s.n_classes,
                "n_prompts": system.n_prompts},
        identical=identical,
        inseparable=inseparable,
        n_inseparable=n_inseparable,
        fragile=fragile,
        n_fragile=n_fragile,
        fragile_by_group={k: v for k, v in by_group.items() if v},
        unused_options=unused,
        single_class_options=single,
        groups=infos,
        class_entropy_bits=math.log2(s.n_classes),
        redundancy=nmi,
        redundant_pairs=redundant,
        ceiling=float(ceiling.mean()),
        ceiling_per_class={names[c]: float(v) for c, v in enumerate(ceiling) if v < 1.0},
    )
    report.suggestions = static_suggestions(report)
    return report


def _same_rule(system: System, a: str, b: str) -> bool:
    return dict(system.rules[a]) == dict(system.rules[b])
