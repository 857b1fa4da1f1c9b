"""The test-time-compute curve: accuracy as questions are added to a system.

For every number of groups k = 1..G, the accuracy of the system restricted to
k of its groups, averaged over subsets of k groups (all of them when there are
few, a seeded sample otherwise), with the text prompts Q those groups cost and
the class-name baseline as reference. It is the article's claim made visible
for any system, model and data set.

No model call and no re-scoring of the inputs per subset: every method the
curve supports adds up one term per group (per-group softmax does not look at
other groups), so the input embeddings are compared with every prompt once,
each group's per-class term is computed once, and a subset's scores are the
sum of its groups' terms. The result equals scoring ``System.without_group``
for the missing groups (a test checks it).

Ties count fractionally: when the true class shares the top score with m-1
others the input counts 1/m (the accuracy of a uniformly random tie-break).
With few questions many classes tie, and crediting the first in class order
would reward alphabetical luck.
"""

from __future__ import annotations

import itertools
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from cotembed._embeddings import EmbeddingSet
from cotembed.errors import InputError
from cotembed.scoring import NAMES, OPTIONS, Batch, Scorer, get_method, softmax
from cotembed.system import CompiledSystem

DEFAULT_MAX_SUBSETS = 100
"""Subsets of k groups scored per k; above this many a seeded sample is drawn."""
TERMS_BYTES = 64 * 2**20
"""Rows per chunk are chosen so the G x rows x N term array stays under this size."""


# ------------------------------------------------------------ per-group terms
@dataclass(frozen=True)
class GroupPlan:
    """For each group: its weight, size, and the classes that accept each distinct set of its options."""

    weights: np.ndarray
    sizes: np.ndarray
    sets: tuple[tuple[tuple[np.ndarray, np.ndarray], ...], ...]
    """Per group: (option prompt indices, class columns) for each distinct option set used by a rule."""

    @classmethod
    def of(cls, compiled: CompiledSystem) -> "GroupPlan":
        accepted = compiled.rule_matrix > 0
        starts, sizes = compiled.offsets[:-1], np.diff(compiled.offsets)
        weights, sets = [], []
        for start, size in zip(starts, sizes):
            block = accepted[start : start + size]
            by_set: dict[tuple[int, ...], list[int]] = {}
            for n in range(block.shape[1]):
                by_set.setdefault(tuple(int(i) for i in np.flatnonzero(block[:, n]) + start), []).append(n)
            first = next(iter(by_set.items()))
            weights.append(float(compiled.rule_matrix[first[0][0], first[1][0]]))
            sets.append(tuple((np.asarray(opts), np.asarray(cols)) for opts, cols in by_set.items()))
        return cls(np.asarray(weights, dtype=np.float32), sizes.astype(np.int64), tuple(sets))

    def per_class(self, values: np.ndarray, reduce: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """(G, B, N): ``reduce(values[:, options])`` of each class's options, group by group.

        Classes with the same options get the very same numbers (one reduction,
        copied), so their tie is exact and counted as a tie.
        """
        n_classes = sum(len(cols) for _, cols in self.sets[0])
        out = np.empty((len(self.sets), len(values), n_classes), dtype=np.float32)
        for g, group_sets in enumerate(self.sets):
            for options, columns in group_sets:
                out[g][:, columns] = reduce(values[:, options])[:, None]
        return out


@dataclass
class GroupTerms:
    """Scores of any subset S of groups: ``(sum_{g in S} terms[g] + extra) / sum_{g in S} counts[g]``."""

    terms: np.ndarray
    counts: np.ndarray | None = None
    extra: np.ndarray | None = None

    def scores(self, subset: Sequence[int]) -> np.ndarray:
        total: np.ndarray = self.terms[list(subset)].sum(axis=0)
        if self.extra is not None:
            total = total + self.extra
        if self.counts is not None:
            total = total / self.counts[list(subset)].sum(axis=0)
        return total


def _lse(log_probs: np.ndarray) -> np.ndarray:
    top = log_probs.max(axis=1, keepdims=True)
    log_sum: np.ndarray = top[:, 0] + np.log(np.exp(log_probs - top).sum(axis=1))
    return log_sum


def _cot_terms(batch: Batch, plan: GroupPlan) -> GroupTerms:
    return GroupTerms(plan.per_class(batch.option_probs, lambda p: p.sum(axis=1)) * plan.weights[:, None, None])


def _cot_log_terms(batch: Batch, plan: GroupPlan) -> GroupTerms:
    return GroupTerms(plan.per_class(batch.option_log_probs, _lse) * plan.weights[:, None, None])


def _dclip_terms(batch: Batch, plan: GroupPlan) -> GroupTerms:
    compiled = batch.compiled
    counts = np.add.reduceat((compiled.rule_matrix > 0).astype(np.float32), compiled.offsets[:-1], axis=0)
    return GroupTerms(plan.per_class(batch[OPTIONS], lambda c: c.sum(axis=1)), counts=counts)


def _hybrid_terms(batch: Batch, plan: GroupPlan) -> GroupTerms:
    names = softmax(batch[NAMES] * np.float32(batch.config.temperature), axis=1)
    return GroupTerms(_cot_terms(batch, plan).terms, extra=np.float32(batch.config.hybrid_weight) * names)


CURVE_METHODS: dict[str, Callable[[Batch, GroupPlan], GroupTerms]] = {
    "cot": _cot_terms,
    "cot-log": _cot_log_terms,
    "dclip": _dclip_terms,
    "hybrid": _hybrid_terms,
}
"""Methods whose scores add up per group, so that a subset of groups costs a sum; name -> terms."""


def group_terms(batch: Batch, method: str, plan: GroupPlan | None = None) -> GroupTerms:
    """Every group's per-class contribution to ``method``'s scores on this batch."""
    if method not in CURVE_METHODS:
        raise InputError(f"the curve supports methods {', '.join(CURVE_METHODS)}, not {method!r}")
    return CURVE_METHODS[method](batch, plan or GroupPlan.of(batch.compiled))


# --------------------------------------------------------------------- subsets
def choose_subsets(n_groups: int, k: int, max_subsets: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """All k-subsets of the groups when there are at most ``max_subsets``, else that many distinct random ones."""
    if math.comb(n_groups, k) <= max_subsets:
        return list(itertools.combinations(range(n_groups), k))
    chosen: dict[tuple[int, ...], None] = {}
    while len(chosen) < max_subsets:
        chosen[tuple(sorted(int(g) for g in rng.choice(n_groups, size=k, replace=False)))] = None
    return sorted(chosen)


def tie_credit(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per input: 1/m if the true class is among the m classes sharing the top score, else 0."""
    top = scores == scores.max(axis=1, keepdims=True)
    share: np.ndarray = top[np.arange(len(truth)), truth] / top.sum(axis=1)
    return share


# ----------------------------------------------------------------------- result
@dataclass(frozen=True)
class CurvePoint:
    k: int
    subsets: int
    of: int
    """How many k-subsets exist (``subsets`` < ``of`` when they were sampled)."""
    mean: float
    std: float
    min: float
    max: float
    prompts_mean: float
    prompts_min: int
    prompts_max: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SubsetResult:
    groups: tuple[str, ...]
    prompts: int
    accuracy: float

    def to_dict(self) -> dict[str, Any]:
        return {"groups": list(self.groups), "prompts": self.prompts, "accuracy": self.accuracy}


@dataclass
class Curve:
    system: dict[str, Any]
    model: str
    method: str
    temperature: float
    n_inputs: int
    n_classes: int
    baseline: float
    baseline_prompts: int
    points: list[CurvePoint]
    subsets: list[SubsetResult]
    seed: int
    max_subsets: int
    extra_prompts: int = 0
    """Prompts every point adds besides its groups' options (N for hybrid)."""
    errors: list[Any] = field(default_factory=list)

    @property
    def chance(self) -> float:
        return 1.0 / self.n_classes

    def to_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "model": self.model,
            "method": self.method,
            "temperature": self.temperature,
            "n_inputs": self.n_inputs,
            "n_classes": self.n_classes,
            "chance": self.chance,
            "baseline": {"accuracy": self.baseline, "text_prompts": self.baseline_prompts},
            "seed": self.seed,
            "max_subsets": self.max_subsets,
            "ties": "fractional: 1/m when the true class is one of m classes sharing the top score",
            "points": [p.to_dict() for p in self.points],
            "subsets": [s.to_dict() for s in self.subsets],
            "errors": [e.to_dict() for e in self.errors],
        }


# --------------------------------------------------------------------- driver
def accuracy_curve(
    scorer: Scorer,
    data: EmbeddingSet,
    method: str = "cot",
    max_subsets: int = DEFAULT_MAX_SUBSETS,
    seed: int = 0,
    progress: bool = False,
) -> Curve:
    """Accuracy of ``method`` on every chosen subset of groups, summarised per k; no model call.

    ``scorer`` must be built for ``method`` and ``baseline`` (the reference line).
    """
    get_method(method)
    if method not in CURVE_METHODS:
        raise InputError(f"the curve supports methods {', '.join(CURVE_METHODS)}, not {method!r}")
    if max_subsets < 1:
        raise InputError(f"max_subsets must be at least 1, got {max_subsets}")
    missing = [m for m in (method, "baseline") if m not in scorer.methods]
    if missing:
        raise InputError(f"the scorer was not built for {', '.join(missing)}; build it with methods=({method!r}, 'baseline')")
    if len(data) == 0:
        raise InputError("curve: no labelled inputs to evaluate")
    compiled = scorer.compiled
    plan = GroupPlan.of(compiled)
    n_groups = len(compiled.group_names)
    rng = np.random.default_rng(seed)
    subsets = [s for k in range(1, n_groups + 1) for s in choose_subsets(n_groups, k, max_subsets, rng)]
    truth_all = data.label_indices(compiled.class_names)
    credit = np.zeros(len(subsets))
    baseline_credit = 0.0
    chunk = max(1, min(2048, TERMS_BYTES // (4 * n_groups * compiled.n_classes)))
    with _progress(len(subsets) * math.ceil(len(data) / chunk), progress and len(subsets) > 20) as tick:
        for rows, batch in scorer.batches(data.embeddings, (method, "baseline"), chunk):
            truth = truth_all[rows]
            terms = CURVE_METHODS[method](batch, plan)
            baseline_credit += float(tie_credit(batch[NAMES], truth).sum())
            for i, subset in enumerate(subsets):
                credit[i] += float(tie_credit(terms.scores(subset), truth).sum())
                tick()
    n = len(data)
    extra = compiled.n_classes if NAMES in get_method(method).needs else 0
    results = [
        SubsetResult(tuple(compiled.group_names[g] for g in s), int(plan.sizes[list(s)].sum()) + extra, credit[i] / n)
        for i, s in enumerate(subsets)
    ]
    return Curve(
        system={"name": scorer.system.name, "hash": scorer.system.fingerprint, "n_groups": n_groups, "n_prompts": compiled.n_prompts},
        model=data.model_key,
        method=method,
        temperature=scorer.config.temperature,
        n_inputs=n,
        n_classes=compiled.n_classes,
        baseline=baseline_credit / n,
        baseline_prompts=compiled.n_classes,
        points=_summarise(results),
        subsets=results,
        seed=seed,
        max_subsets=max_subsets,
        extra_prompts=extra,
        errors=list(data.errors),
    )


def _summarise(results: Sequence[SubsetResult]) -> list[CurvePoint]:
    n_groups = max(len(r.groups) for r in results)
    points = []
    for k in range(1, n_groups + 1):
        at_k = [r for r in results if len(r.groups) == k]
        acc = np.asarray([r.accuracy for r in at_k])
        prompts = np.asarray([r.prompts for r in at_k])
        points.append(CurvePoint(
            k=k, subsets=len(at_k), of=math.comb(n_groups, k),
            mean=float(acc.mean()), std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            min=float(acc.min()), max=float(acc.max()),
            prompts_mean=float(prompts.mean()), prompts_min=int(prompts.min()), prompts_max=int(prompts.max()),
        ))
    return points


class _progress:
    """A tqdm bar on stderr (or nothing) whose ``tick`` advances it by one."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="curve", unit="subset", file=sys.stderr, dynamic_ncols=True, leave=False)

    def __enter__(self) -> Callable[[], None]:
        return self.tick

    def tick(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = [
    "CURVE_METHODS",
    "DEFAULT_MAX_SUBSETS",
    "Curve",
    "CurvePoint",
    "GroupPlan",
    "GroupTerms",
    "SubsetResult",
    "accuracy_curve",
    "choose_subsets",
    "group_terms",
    "tie_credit",
]
