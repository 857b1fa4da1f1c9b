"""Metrics of several methods on one labelled embedding set, without the model.

Takes a :class:`~cotembed.scoring.Scorer` and an :class:`~cotembed._embeddings.EmbeddingSet`
and scores chunk by chunk, keeping only counts, so memory does not grow with the data.
Metrics use the CLIP_benchmark vocabulary: ``acc1``, ``acc5``, ``mean_per_class_recall``,
plus the expected calibration error of the method's probabilities and a confusion
matrix. It also reports *question accuracy*: how often each group's most probable
option is one that the true class's rule accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from cotembed._embeddings import EmbeddingSet
from cotembed._pipeline import SampleError
from cotembed.errors import InputError
from cotembed.scoring import DEFAULT_EVAL_METHODS, Batch, Scorer, ScoringMethod, method_class, method_settings
from cotembed.scoring._posteriors import class_probabilities, seed_probabilities

ECE_BINS = 15
DENSE_CONFUSION_MAX_CLASSES = 256
"""Above this many classes the JSON lists only the largest confusions, not the whole matrix."""
TOP_CONFUSIONS = 20


@dataclass
class MethodResult:
    """Counts for one method; every metric is derived from them."""

    method: str
    prompts: int
    class_names: tuple[str, ...]
    confusion: np.ndarray
    top5_hits: int = 0
    ece_count: np.ndarray = field(default_factory=lambda: np.zeros(ECE_BINS, dtype=np.int64))
    ece_confidence: np.ndarray = field(default_factory=lambda: np.zeros(ECE_BINS))
    ece_correct: np.ndarray = field(default_factory=lambda: np.zeros(ECE_BINS))
    extra_sums: dict[str, float] = field(default_factory=dict)
    """Sums of the method's per-input ``extra_stats`` (e.g. questions asked)."""

    @property
    def total(self) -> int:
        return int(self.confusion.sum())

    @property
    def correct(self) -> int:
        return int(np.trace(self.confusion))

    @property
    def accuracy(self) -> float | None:
        """Top-1 accuracy; None when nothing was evaluated (never a misleading 0 %)."""
        return self.correct / self.total if self.total else None

    acc1 = accuracy

    @property
    def acc5(self) -> float | None:
        return self.top5_hits / self.total if self.total else None

    @property
    def per_class_recall(self) -> dict[str, float]:
        support = self.confusion.sum(axis=1)
        return {c: float(self.confusion[i, i] / support[i]) for i, c in enumerate(self.class_names) if support[i]}

    @property
    def mean_per_class_recall(self) -> float | None:
        recalls = list(self.per_class_recall.values())
        return float(np.mean(recalls)) if recalls else None

    @property
    def ece(self) -> float | None:
        """Expected calibration error of the top-1 probability (15 equal-width bins)."""
        if not self.total:
            return None
        gaps = np.abs(self.ece_confidence - self.ece_correct)
        return float(gaps.sum() / self.total)

    def add(self, truth: np.ndarray, scores: np.ndarray, probs: np.ndarray) -> None:
        predicted = scores.argmax(axis=1)
        np.add.at(self.confusion, (truth, predicted), 1)
        k = min(5, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        self.top5_hits += int((top == truth[:, None]).any(axis=1).sum())
        confidence = probs[np.arange(len(truth)), predicted].astype(np.float64)
        bins = np.minimum((confidence * ECE_BINS).astype(np.int64), ECE_BINS - 1)
        np.add.at(self.ece_count, bins, 1)
        np.add.at(self.ece_confidence, bins, confidence)
        np.add.at(self.ece_correct, bins, (predicted == truth).astype(np.float64))

    def update(self, method: ScoringMethod, batch: Batch, truth: np.ndarray) -> None:
        scores = method.score(batch)
        self.add(truth, scores, class_probabilities(method, batch, scores))
        for name, values in method.extra_stats(batch).items():
            self.extra_sums[name] = self.extra_sums.get(name, 0.0) + float(np.sum(values))

    @property
    def extra(self) -> dict[str, float]:
        """Means per input of the method's extra figures (empty for most methods)."""
        return {k: v / self.total for k, v in self.extra_sums.items()} if self.total else {}

    def top_confusions(self, limit: int = TOP_CONFUSIONS) -> list[dict[str, Any]]:
        off = self.confusion.copy()
        np.fill_diagonal(off, 0)
        flat = np.argsort(-off, axis=None, kind="stable")[:limit]
        rows, cols = np.unravel_index(flat, off.shape)
        return [
            {"true": self.class_names[r], "predicted": self.class_names[c], "count": int(off[r, c])}
            for r, c in zip(rows, cols)
            if off[r, c] > 0
        ]

    def to_dict(self) -> dict[str, Any]:
        support = self.confusion.sum(axis=1)
        out: dict[str, Any] = {
            "accuracy": self.accuracy,
            "acc1": self.accuracy,
            "acc5": self.acc5,
            "mean_per_class_recall": self.mean_per_class_recall,
            "ece": self.ece,
            "correct": self.correct,
            "total": self.total,
            "text_prompts": self.prompts,
            "per_class": {
                c: {"accuracy": float(self.confusion[i, i] / support[i]), "correct": int(self.confusion[i, i]), "total": int(support[i])}
                for i, c in sorted(enumerate(self.class_names), key=lambda item: item[1])
                if support[i]
            },
            "top_confusions": self.top_confusions(),
        }
        if self.extra:
            out["extra"] = {f"mean_{k}": v for k, v in self.extra.items()}
        if len(self.class_names) <= DENSE_CONFUSION_MAX_CLASSES:
            out["confusion"] = {"classes": list(self.class_names), "matrix": self.confusion.tolist()}
        return out


SPREAD_METRICS = ("acc1", "acc5", "mean_per_class_recall", "ece")


class SeededResult:
    """One :class:`MethodResult` per seed of a seeded method (random-control); metrics are their means.

    Seeds are repeats of the same experiment, so the JSON keeps every run and the
    spread (sample std, min, max) of each metric next to the mean.
    """

    def __init__(self, method: str, prompts: int, class_names: tuple[str, ...], seeds: Sequence[int]):
        self.method, self.prompts, self.class_names = method, prompts, class_names
        n = len(class_names)
        self.runs = {s: MethodResult(method, prompts, class_names, np.zeros((n, n), dtype=np.int64)) for s in seeds}

    def update(self, method: ScoringMethod, batch: Batch, truth: np.ndarray) -> None:
        if not method.seeds():
            raise TypeError(f"{method.name} is not a seeded method")
        for seed, run in self.runs.items():
            scores = method.score_seed(batch, seed)
            run.add(truth, scores, seed_probabilities(method, batch, seed, scores))

    def _values(self, metric: str) -> list[float]:
        return [v for v in (getattr(r, metric) for r in self.runs.values()) if v is not None]

    def _mean(self, metric: str) -> float | None:
        values = self._values(metric)
        return float(np.mean(values)) if values else None

    @property
    def total(self) -> int:
        return next(iter(self.runs.values())).total

    @property
    def confusion(self) -> np.ndarray:
        """Summed over seeds (each run's own matrix is in the JSON under ``seeds``)."""
        confusion: np.ndarray = np.sum([r.confusion for r in self.runs.values()], axis=0)
        return confusion

    @property
    def acc1(self) -> float | None:
        return self._mean("acc1")

    accuracy = acc1

    @property
    def acc5(self) -> float | None:
        return self._mean("acc5")

    @property
    def mean_per_class_recall(self) -> float | None:
        return self._mean("mean_per_class_recall")

    @property
    def ece(self) -> float | None:
        return self._mean("ece")

    @property
    def per_class_recall(self) -> dict[str, float]:
        runs = [r.per_class_recall for r in self.runs.values()]
        return {c: float(np.mean([r[c] for r in runs])) for c in runs[0]}

    @property
    def spread(self) -> dict[str, dict[str, float]]:
        """Per metric: mean, std (ddof=1; 0 for one seed), min and max over seeds."""
        out = {}
        for metric in SPREAD_METRICS:
            values = np.asarray(self._values(metric), dtype=np.float64)
            if len(values):
                std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                out[metric] = {"mean": float(values.mean()), "std": std, "min": float(values.min()), "max": float(values.max())}
        return out

    def to_dict(self) -> dict[str, Any]:
        runs = {str(s): r.to_dict() for s, r in self.runs.items()}
        out: dict[str, Any] = {m: self._mean(m) for m in ("accuracy", *SPREAD_METRICS)}
        out.update(
            correct=float(np.mean([r.correct for r in self.runs.values()])),
            total=self.total,
            text_prompts=self.prompts,
            n_seeds=len(self.runs),
            spread=self.spread,
            per_class={c: {"accuracy": v} for c, v in sorted(self.per_class_recall.items())},
            seeds=runs,
        )
        if len(self.class_names) <= DENSE_CONFUSION_MAX_CLASSES:
            out["confusion"] = {"classes": list(self.class_names), "matrix": self.confusion.tolist(), "summed_over_seeds": True}
        return out


def _new_result(name: str, scorer: Scorer) -> MethodResult | SeededResult:
    method, compiled = scorer.method(name), scorer.compiled
    prompts = scorer.prompts_used(name)
    seeds = method.seeds()
    if seeds:
        return SeededResult(name, prompts, compiled.class_names, seeds)
    n = compiled.n_classes
    return MethodResult(name, prompts, compiled.class_names, np.zeros((n, n), dtype=np.int64))


@dataclass
class EvalReport:
    system: dict[str, Any]
    model: str
    temperature: float
    hybrid_weight: float
    n_inputs: int
    n_classes: int
    methods: dict[str, MethodResult | SeededResult]
    question_accuracy: dict[str, float | None]
    errors: list[SampleError]
    skipped: list[str]
    n_encoded: int = 0
    chance: float = 0.0
    method_options: dict[str, Any] = field(default_factory=dict)
    """Settings that change some methods' scores (ensemble templates, random-control seeds)."""
    probabilities: str = "calibrated"
    """How the probabilities behind ECE were made (see :mod:`cotembed.scoring._posteriors`)."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Further sections (open set, conformal sets, abstention, multi-label), by name, as JSON."""

    @property
    def n_images(self) -> int:
        """Older name of ``n_inputs``, kept for callers of the first release."""
        return self.n_inputs

    def to_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "model": self.model,
            "temperature": self.temperature,
            "hybrid_weight": self.hybrid_weight,
            "probabilities": self.probabilities,
            "method_options": self.method_options,
            "n_inputs": self.n_inputs,
            "n_images": self.n_inputs,
            "n_classes": self.n_classes,
            "chance": self.chance,
            "methods": {m: r.to_dict() for m, r in self.methods.items()},
            "question_accuracy": self.question_accuracy,
            "errors": [e.to_dict() for e in self.errors],
            "skipped_unknown_labels": self.skipped,
            "n_encoded": self.n_encoded,
            **self.extras,
        }


def evaluate(scorer: Scorer, data: EmbeddingSet, methods: Sequence[str] | None = None) -> EvalReport:
    """Every method's metrics on the labelled embedding set; no model call.

    Methods that learn from the unlabelled batch (adaptive's answer model) are fitted
    on ``data``'s embeddings first, without its labels; the report records what they used.

    Parameters
    ----------
    scorer : Scorer
        Built for the system and every method to evaluate.
    data : EmbeddingSet
        Labelled input embeddings from the same model as the scorer's prompts
        (``CoTClassifier.labelled_embedding_set`` builds one from samples).
    methods : sequence of str or None, default None
        The methods to report, in order; None reports every method of the scorer.

    Returns
    -------
    EvalReport
        Per-method accuracy, top-5, recall, calibration and confusion, with the model
        key, system hash and temperature they were measured with.

    Examples
    --------
    >>> import numpy as np
    >>> from cotembed import EmbeddingSet, Scorer, ScoringConfig, System, evaluate
    >>> system = System.from_dict({"groups": {"colour": {"prompt": "a {} bird", "options": ["red", "blue"]}},
    ...                            "rules": {"robin": {"colour": "red"}, "jay": {"colour": "blue"}}})
    >>> def embed(texts):
    ...     return np.array([[1.0, 0.0] if "red" in t or "robin" in t else [0.0, 1.0] for t in texts], dtype=np.float32)
    >>> scorer = Scorer.build(system, embed, ScoringConfig(temperature=100.0), methods=["baseline", "cot"])
    >>> data = EmbeddingSet(np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32),
    ...                     sources=["a.png", "b.png"], labels=["robin", "jay"], model_key="toy")
    >>> evaluate(scorer, data).methods["cot"].accuracy
    1.0
    """
    names = tuple(dict.fromkeys(methods if methods is not None else scorer.methods))
    if not names:
        raise InputError(f"no methods given; choose from {', '.join(DEFAULT_EVAL_METHODS)}")
    for name in names:
        method_class(name)
    missing = [m for m in names if m not in scorer.methods]
    if missing:
        raise InputError(f"the scorer was not built for {', '.join(missing)}; build it with methods={list(names)}")
    if len(data):
        scorer = scorer.prepare(data.embeddings, names)
    compiled = scorer.compiled
    truth_all = data.label_indices(compiled.class_names)
    n_classes = compiled.n_classes
    results = {m: _new_result(m, scorer) for m in names}
    n_groups = len(compiled.group_names)
    question_hits = np.zeros(n_groups, dtype=np.int64)
    needs_options = any("options" in scorer.method(m).prompt_sets(compiled, scorer.config) for m in names)
    for rows, batch in scorer.batches(data.embeddings, names):
        truth = truth_all[rows]
        for name, result in results.items():
            result.update(scorer.method(name), batch, truth)
        if needs_options:
            question_hits += _question_hits(batch.option_probs, compiled.offsets, compiled.rule_matrix, truth)
    n = len(data)
    question_accuracy: dict[str, float | None] = {
        g: (float(question_hits[i]) / n if n and needs_options else None) for i, g in enumerate(compiled.group_names)
    }
    return EvalReport(
        system={"name": scorer.system.name, "hash": scorer.system.fingerprint, "n_prompts": compiled.n_prompts},
        model=data.model_key,
        temperature=scorer.config.temperature,
        hybrid_weight=scorer.config.hybrid_weight,
        n_inputs=n,
        n_classes=n_classes,
        methods=results,
        question_accuracy=question_accuracy,
        errors=list(data.errors),
        skipped=list(data.skipped),
        n_encoded=data.n_encoded,
        chance=1.0 / n_classes,
        method_options=method_settings([scorer.method(m) for m in names], compiled),
        probabilities=scorer.config.probabilities,
    )


def question_answers(option_probs: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(B, G) prompt index of each group's most probable option."""
    return np.stack(
        [offsets[g] + option_probs[:, offsets[g] : offsets[g + 1]].argmax(axis=1) for g in range(len(offsets) - 1)],
        axis=1,
    )


def _question_hits(option_probs: np.ndarray, offsets: np.ndarray, rule_matrix: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per group: how many inputs got an answer the true class's rule accepts."""
    answers = question_answers(option_probs, offsets)
    agreement: np.ndarray = (rule_matrix[answers, truth[:, None]] > 0).sum(axis=0)
    return agreement


__all__ = ["EvalReport", "MethodResult", "SeededResult", "evaluate", "question_answers"]
