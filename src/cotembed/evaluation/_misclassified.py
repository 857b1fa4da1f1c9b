"""The inputs a method gets wrong, with each question's answer next to what the rules expected.

For a report a person reads, metrics are not enough: one wants to see *which*
inputs fail and *which question* led the method astray. This module picks a
bounded, seeded sample of misclassified inputs per method and explains each from
the per-group option probabilities (``batch.option_probs``); no model call.

The sample is drawn from one seeded permutation of the inputs shared by every
method, so methods that fail on the same inputs show the same inputs (easier to
compare, and a report embeds each thumbnail once). Memory stays bounded: one
pass keeps each input's predicted class per method, a second pass scores only
the sampled rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from cotembed._embeddings import EmbeddingSet
from cotembed.errors import InputError
from cotembed.scoring import OPTIONS, Scorer
from cotembed.scoring._posteriors import class_probabilities

DEFAULT_MAX_PER_METHOD = 24
"""Misclassified inputs shown per method; the rest are counted, not shown."""


@dataclass(frozen=True)
class QuestionCheck:
    """One question for one input: the model's answer and the probability each class's rule collects."""

    group: str
    answer: str
    probability: float
    true_options: tuple[str, ...]
    true_probability: float
    predicted_options: tuple[str, ...]
    predicted_probability: float

    @property
    def verdict(self) -> str:
        """``right`` (the answer fits the true class), ``misled`` (it fits only the predicted one) or ``neither``."""
        if self.answer in self.true_options:
            return "right"
        return "misled" if self.answer in self.predicted_options else "neither"

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "answer": self.answer,
            "probability": self.probability,
            "true_options": list(self.true_options),
            "true_probability": self.true_probability,
            "predicted_options": list(self.predicted_options),
            "predicted_probability": self.predicted_probability,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class Misclassification:
    """One wrong prediction of one method."""

    row: int
    source: str
    label: str
    predicted: str
    predicted_probability: float
    true_probability: float
    true_rank: int
    """1-based rank of the true class among the method's scores (ties share the better rank)."""
    questions: tuple[QuestionCheck, ...]
    """Empty when the scorer has no option prompts (a baseline-only scorer)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "input": self.source,
            "label": self.label,
            "predicted": self.predicted,
            "predicted_probability": self.predicted_probability,
            "true_probability": self.true_probability,
            "true_rank": self.true_rank,
            "questions": [q.to_dict() for q in self.questions],
        }


@dataclass(frozen=True)
class MethodMistakes:
    method: str
    misclassified: int
    total: int
    shown: tuple[Misclassification, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "misclassified": self.misclassified, "total": self.total, "shown": [m.to_dict() for m in self.shown]}


@dataclass(frozen=True)
class MisclassifiedSample:
    seed: int
    max_per_method: int
    methods: tuple[MethodMistakes, ...]

    @property
    def rows(self) -> list[int]:
        """Every input shown by some method, once, in data order."""
        return sorted({m.row for mm in self.methods for m in mm.shown})

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "max_per_method": self.max_per_method, "methods": {m.method: m.to_dict() for m in self.methods}}


def misclassified_examples(
    scorer: Scorer,
    data: EmbeddingSet,
    methods: Sequence[str] | None = None,
    max_per_method: int = DEFAULT_MAX_PER_METHOD,
    seed: int = 0,
) -> MisclassifiedSample:
    """Up to ``max_per_method`` misclassified inputs per method (a seeded sample), each explained per question."""
    names = tuple(dict.fromkeys(methods if methods is not None else scorer.methods))
    missing = [m for m in names if m not in scorer.methods]
    if missing:
        raise InputError(f"the scorer was not built for {', '.join(missing)}; build it with methods={list(names)}")
    if max_per_method < 0:
        raise InputError(f"max_per_method must be 0 or more, got {max_per_method}")
    scorer = scorer.prepare(data.embeddings, names) if len(data) else scorer  # as evaluate scores them
    compiled = scorer.compiled
    truth = data.label_indices(compiled.class_names)
    n = len(truth)
    predicted = {m: np.empty(n, dtype=np.int64) for m in names}
    for rows, batch in scorer.batches(data.embeddings, names):
        for name in names:
            predicted[name][rows] = scorer.method(name).score(batch).argmax(axis=1)
    order = np.random.default_rng(seed).permutation(n)
    chosen = {}
    for name in names:
        wrong = predicted[name][order] != truth[order]
        chosen[name] = np.sort(order[wrong][:max_per_method])
    union = np.unique(np.concatenate([chosen[m] for m in names])) if names else np.zeros(0, dtype=np.int64)
    explained: dict[str, dict[int, Misclassification]] = {m: {} for m in names}
    if len(union):
        batch = scorer.batch(data.embeddings[union])  # every set the scorer has: option prompts even for baseline
        option_probs = batch.option_probs if OPTIONS in batch.similarities else None
        for name in names:
            method = scorer.method(name)
            scores = method.score(batch)
            probs = class_probabilities(method, batch, scores)
            wanted = set(chosen[name].tolist())
            for i, row in enumerate(union.tolist()):
                if row in wanted:
                    explained[name][row] = _explain(row, data.sources[row], int(truth[row]), scores[i], probs[i],
                                                    None if option_probs is None else option_probs[i], scorer)
    result = tuple(
        MethodMistakes(name, int((predicted[name] != truth).sum()), n, tuple(explained[name][r] for r in chosen[name].tolist()))
        for name in names
    )
    return MisclassifiedSample(seed, max_per_method, result)


def _explain(row: int, source: str, t: int, scores: np.ndarray, probs: np.ndarray, option_probs: np.ndarray | None,
             scorer: Scorer) -> Misclassification:
    compiled = scorer.compiled
    p = int(scores.argmax())
    questions: list[QuestionCheck] = []
    if option_probs is not None:
        accepted = compiled.rule_matrix > 0
        for g, group in enumerate(scorer.system.groups):
            start, stop = int(compiled.offsets[g]), int(compiled.offsets[g + 1])
            probs_g = option_probs[start:stop]
            best = int(probs_g.argmax())
            true_mask, pred_mask = accepted[start:stop, t], accepted[start:stop, p]
            questions.append(QuestionCheck(
                group=group.name,
                answer=group.options[best],
                probability=float(probs_g[best]),
                true_options=tuple(o for o, ok in zip(group.options, true_mask) if ok),
                true_probability=float(probs_g[true_mask].sum()),
                predicted_options=tuple(o for o, ok in zip(group.options, pred_mask) if ok),
                predicted_probability=float(probs_g[pred_mask].sum()),
            ))
    return Misclassification(
        row=row,
        source=source,
        label=compiled.class_names[t],
        predicted=compiled.class_names[p],
        predicted_probability=float(probs[p]),
        true_probability=float(probs[t]),
        true_rank=int((scores > scores[t]).sum()) + 1,
        questions=tuple(questions),
    )


__all__ = ["DEFAULT_MAX_PER_METHOD", "Misclassification", "MethodMistakes", "MisclassifiedSample", "QuestionCheck", "misclassified_examples"]
