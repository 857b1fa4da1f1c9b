"""Accuracy against the number of labelled examples per class: ``cotembed curve --shots 1,2,4,8,16``.

For every K, ``draws`` seeded draws of K examples per class from a pool of labelled
examples (never the test inputs); each few-shot method is fitted on the draw and scored on
the test set, and ``induce`` (rules induced from the draw by
:class:`~cotembed.authoring.induce.RuleInducer`, their new prompts through the prompt cache)
is tested likewise. The zero-shot methods (and, with ``transductive``, each refined on the
whole test batch) are flat reference lines. Everything is scored from embeddings that
came through the cache once: no model call per draw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from cotembed._embeddings import EmbeddingSet
from cotembed.authoring.induce import RuleInducer
from cotembed.errors import InputError
from cotembed.scoring import Scorer
from cotembed.scoring._transductive_method import Transductive

if TYPE_CHECKING:
    from cotembed._classifier import CoTClassifier

DEFAULT_SHOTS = (1, 2, 4, 8, 16)
DEFAULT_DRAWS = 5
FEW_SHOT = ("prototype", "gda", "fused")
INDUCE = "induce"
"""The line of rules induced from each draw (RuleInducer), beside the few-shot methods."""
ZERO_SHOT = ("cot", "hybrid")


@dataclass
class ShotsCurve:
    system: dict[str, Any]
    model: str
    n_inputs: int
    n_classes: int
    pool: int
    shots: list[int]
    draws: int
    seed: int
    lines: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    """Per few-shot method, per K: mean and std of accuracy over the draws, and the draws' count."""
    reference: dict[str, float] = field(default_factory=dict)
    """Zero-shot accuracy per method (``cot+transductive`` for the refined ones)."""

    def to_dict(self) -> dict[str, Any]:
        return {"system": self.system, "model": self.model, "n_inputs": self.n_inputs, "n_classes": self.n_classes,
                "pool": self.pool, "shots": self.shots, "draws": self.draws, "seed": self.seed,
                "lines": self.lines, "reference": self.reference}


def draw(labels: np.ndarray, n_classes: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of k examples per class (all of a class's rows when it has fewer), sorted."""
    rows = []
    for c in range(n_classes):
        own = np.flatnonzero(labels == c)
        if len(own):
            rows.append(rng.choice(own, size=min(k, len(own)), replace=False))
    return np.sort(np.concatenate(rows)) if rows else np.zeros(0, dtype=np.int64)


def shots_curve(clf: "CoTClassifier", test: EmbeddingSet, pool: EmbeddingSet, shots: Sequence[int] = DEFAULT_SHOTS,
                draws: int = DEFAULT_DRAWS, seed: int = 0, transductive: bool = True, progress: bool = False) -> ShotsCurve:
    """Mean ± std accuracy of the few-shot methods at each K, with the zero-shot (and refined) lines."""
    if not len(test) or not len(pool):
        raise InputError("curve --shots: needs labelled test inputs and a pool of labelled examples")
    names = clf.compiled.class_names
    truth, pool_labels = test.label_indices(names), pool.label_indices(names)
    scorer = Scorer.build(clf.system, clf.prompt_bank.embed, clf.config, (*FEW_SHOT, *ZERO_SHOT))
    out = ShotsCurve({"name": clf.system.name, "hash": clf.system.fingerprint}, test.model_key, len(test), len(names),
                     len(pool), list(shots), int(draws), int(seed))
    for method in ZERO_SHOT:
        out.reference[method] = float(np.mean(scorer.scores(test.embeddings, method).argmax(axis=1) == truth))
        if transductive:
            refined = scorer.with_methods([Transductive(scorer.method(method))]).prepare(test.embeddings)
            out.reference[f"{method}+transductive"] = float(np.mean(refined.scores(test.embeddings, method).argmax(axis=1) == truth))
    steps = [(k, d) for k in shots for d in range(draws)]
    bar = None
    if progress:
        import sys

        from tqdm.auto import tqdm

        bar = tqdm(total=len(steps), desc="shots", unit="draw", file=sys.stderr, leave=False)
    accuracies: dict[tuple[str, int], list[float]] = {}
    try:
        for k, d in steps:
            rows = draw(pool_labels, len(names), k, np.random.default_rng([seed, k, d]))
            batches = [b for _, b in scorer.batches(pool.embeddings[rows], FEW_SHOT)]
            for method in FEW_SHOT:
                fitted = scorer.with_methods([scorer.method(method).fit_examples(batches, pool_labels[rows])])
                hit = fitted.scores(test.embeddings, method).argmax(axis=1) == truth
                accuracies.setdefault((method, k), []).append(float(np.mean(hit)))
            inducer = RuleInducer(clf.system, clf.prompt_bank.embed, temperature=clf.config.temperature)
            accuracies.setdefault((INDUCE, k), []).append(float(inducer.fit(pool.subset(rows)).score(test)))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    for method in (*FEW_SHOT, INDUCE):
        out.lines[method] = []
        for k in shots:
            values = np.asarray(accuracies[(method, k)])
            out.lines[method].append({"shots": int(k), "mean": float(values.mean()),
                                      "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0, "draws": len(values)})
    return out


__all__ = ["DEFAULT_DRAWS", "DEFAULT_SHOTS", "INDUCE", "ShotsCurve", "draw", "shots_curve"]
