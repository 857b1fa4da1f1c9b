"""Accuracy of several methods on one labelled set, from a single encoding pass.

The inputs are encoded once (streamed, cached); each batch is scored by every
method and only counts are kept, so memory does not grow with the data set.
Besides accuracy per method and per class, it reports *question accuracy*: how
often each group's most probable option is one the true class's rule accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from cotembed.classifier import CoTClassifier, prompts_used
from cotembed.data import Sample
from cotembed.errors import InputError
from cotembed.pipeline import SampleError, stream_embeddings
from cotembed.scoring import METHODS, Method


@dataclass
class MethodResult:
    method: Method
    prompts: int
    correct: int = 0
    total: int = 0
    per_class_correct: dict[str, int] = field(default_factory=dict)
    per_class_total: dict[str, int] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "correct": self.correct,
            "total": self.total,
            "text_prompts": self.prompts,
            "per_class": {
                c: {"accuracy": self.per_class_correct.get(c, 0) / n, "correct": self.per_class_correct.get(c, 0), "total": n}
                for c, n in sorted(self.per_class_total.items())
            },
        }


@dataclass
class EvalReport:
    system: dict[str, Any]
    model: str
    temperature: float
    hybrid_weight: float
    n_images: int
    n_classes: int
    methods: dict[Method, MethodResult]
    question_accuracy: dict[str, float]
    errors: list[SampleError]
    skipped: list[str]
    n_encoded: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "model": self.model,
            "temperature": self.temperature,
            "hybrid_weight": self.hybrid_weight,
            "n_images": self.n_images,
            "n_classes": self.n_classes,
            "methods": {m: r.to_dict() for m, r in self.methods.items()},
            "question_accuracy": self.question_accuracy,
            "errors": [e.to_dict() for e in self.errors],
            "skipped_unknown_labels": self.skipped,
            "n_encoded": self.n_encoded,
        }


def evaluate(
    classifier: CoTClassifier,
    samples: Sequence[Sample],
    methods: Sequence[Method] = METHODS,
    skipped: Sequence[Sample] = (),
) -> EvalReport:
    """Score every method on the labelled samples (labels already resolved to class names)."""
    unlabelled = [s.source for s in samples if s.label is None]
    if unlabelled:
        raise InputError(f"eval needs labels; {len(unlabelled)} input(s) have none, e.g. {unlabelled[0]}")
    if not samples:
        raise InputError("eval: no labelled inputs to evaluate")
    if not methods:
        raise InputError(f"eval: no methods given; choose from {', '.join(METHODS)}")
    for m in methods:
        if m not in METHODS:
            raise InputError(f"unknown method {m!r}: choose from {', '.join(METHODS)}")
    scorer = classifier.scorer
    compiled = classifier.compiled
    system = classifier.system
    class_index = {c: i for i, c in enumerate(compiled.class_names)}
    results = {m: MethodResult(m, prompts_used(m, compiled)) for m in methods}
    question_hits = np.zeros(len(system.groups), dtype=np.int64)
    errors: list[SampleError] = []
    n_seen = n_encoded = 0
    need_names: Method = "cot" if set(methods) == {"cot"} else "hybrid"

    for batch in stream_embeddings(samples, classifier.encoder, classifier.cache, classifier.batch_size, classifier.progress, "eval"):
        errors.extend(batch.errors)
        n_encoded += batch.n_encoded
        if not batch.samples:
            continue
        truth = np.asarray([class_index[s.label] for s in batch.samples])  # type: ignore[index]
        prompt_sims, name_sims = scorer.similarities(batch.embeddings, need_names)
        probs = scorer.option_probabilities(prompt_sims)
        for result in results.values():
            predicted = scorer.scores(result.method, prompt_sims, name_sims, probs).argmax(axis=1)
            _count(result, truth, predicted, compiled.class_names)
        # Each group's most probable option, as a prompt index; the rule matrix says whether the true class accepts it.
        answers = np.stack(
            [compiled.offsets[g] + probs[:, compiled.offsets[g] : compiled.offsets[g + 1]].argmax(axis=1) for g in range(len(system.groups))],
            axis=1,
        )
        question_hits += (compiled.rule_matrix[answers, truth[:, None]] > 0).sum(axis=0)
        n_seen += len(batch.samples)

    question_accuracy = {g.name: (float(question_hits[i]) / n_seen if n_seen else 0.0) for i, g in enumerate(system.groups)}
    return EvalReport(
        system={"name": system.name, "hash": system.hash, "n_prompts": compiled.n_prompts},
        model=classifier.encoder.model_key,
        temperature=classifier.temperature,
        hybrid_weight=classifier.hybrid_weight,
        n_images=n_seen,
        n_classes=compiled.n_classes,
        methods=results,
        question_accuracy=question_accuracy,
        errors=errors,
        skipped=[s.source for s in skipped],
        n_encoded=n_encoded,
    )


def _count(result: MethodResult, truth: np.ndarray, predicted: np.ndarray, class_names: Sequence[str]) -> None:
    hits = truth == predicted
    result.correct += int(hits.sum())
    result.total += len(truth)
    for t, h in zip(truth, hits):
        name = class_names[int(t)]
        result.per_class_total[name] = result.per_class_total.get(name, 0) + 1
        result.per_class_correct[name] = result.per_class_correct.get(name, 0) + int(h)
