"""What the optimiser maximises: accuracy of a candidate system on cached embeddings.

The inputs are embedded once; a candidate then costs a prompt-bank look-up (only
wordings never seen before reach the model, batched by :meth:`Objective.prefetch`),
compiling the system and one pass of the :class:`~cotembed.scoring.Scorer` over the
training and validation rows together. Only top-1 hits and the mean probability
of the true class are kept (the full :func:`~cotembed.evaluation._evaluate.evaluate` report is
for the systems worth reporting, :meth:`Objective.report`).

The validation rows are scored with every candidate but never steer the search:
the search accepts moves by training accuracy and picks the best system by
validation accuracy, which is how overfitting to the training rows shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from cotembed._embeddings import EmbeddingSet
from cotembed.errors import InputError
from cotembed.evaluation._evaluate import EvalReport, evaluate
from cotembed.scoring import (
    NAMES,
    OPTIONS,
    SCORING_CHUNK,
    Batch,
    Scorer,
    ScoringConfig,
    get_method,
    group_softmax,
    l2_normalize,
)
from cotembed.system import System

EmbedTexts = Callable[[Sequence[str]], np.ndarray]

COLUMN_CACHE_BYTES = 512 * 2**20
"""Bound on the similarity-column table (rows x prompt texts float32) of one objective."""
_STANDARD_SETS = frozenset({OPTIONS, NAMES})


@dataclass(frozen=True)
class Score:
    """A candidate's marks: top-1 accuracy on train (and val), and the mean probability of the true class on train."""

    train: float
    val: float | None
    train_confidence: float

    @property
    def key(self) -> tuple[float, float]:
        """What the search compares: accuracy first; on a tie, the surer system (smooths plateaus)."""
        return (self.train, self.train_confidence)

    def to_dict(self) -> dict[str, Any]:
        return {"train_accuracy": self.train, "val_accuracy": self.val, "train_confidence": self.train_confidence}


class Objective:
    """Scores systems on labelled embeddings: ``train`` steers, ``val`` (optional) is kept apart.

    ``temperature`` is used for systems that set none (a system's own temperature wins,
    as in ``cotembed eval``); ``method`` must ask the system's questions (cot, hybrid, ...).
    """

    def __init__(self, train: EmbeddingSet, embed: EmbedTexts, temperature: float, *, val: EmbeddingSet | None = None,
                 method: str = "cot", hybrid_weight: float = 1.0):
        scoring = get_method(method)
        if scoring.seeds():
            raise InputError(f"optimize needs a method with one answer per input, not the seeded method {method!r}")
        self.method = method
        self.embed = embed
        self.base_config = ScoringConfig(temperature, hybrid_weight)
        if not len(train):
            raise InputError("optimize: no training inputs")
        for name, part in (("training", train), ("validation", val)):
            if part is not None and not np.isfinite(part.embeddings).all():
                raise InputError(f"optimize: the {name} embeddings contain NaN or infinite values")
        self.train = train
        self.val = val if val is not None and len(val) else None
        parts = [train.embeddings] + ([self.val.embeddings] if self.val is not None else [])
        self._x = l2_normalize(np.concatenate(parts).astype(np.float32, copy=False))
        self.n_train = len(train)
        self._labels = list(train.labels) + (list(self.val.labels) if self.val is not None else [])
        self._truth: dict[tuple[str, ...], np.ndarray] = {}
        self.n_scored = 0
        self._columns: _Columns | None = _Columns(self._x, embed) if len(self._x) * 4 * 64 <= COLUMN_CACHE_BYTES else None
        if OPTIONS not in scoring.prompt_sets(_probe_system().compile(), self.base_config):
            raise InputError(f"optimize needs a method that asks the system's questions (cot, hybrid, ...), not {method!r}")

    # ------------------------------------------------------------- scoring
    def config(self, system: System) -> ScoringConfig:
        if system.temperature is None or system.temperature == self.base_config.temperature:
            return self.base_config
        return ScoringConfig(system.temperature, self.base_config.hybrid_weight, self.base_config.method_options)

    def scorer(self, system: System) -> Scorer:
        return Scorer.build(system, self.embed, self.config(system), (self.method,))

    def truth(self, class_names: tuple[str, ...]) -> np.ndarray:
        """Label indices of train + val rows in this class order (an InputError names an unknown label)."""
        cached = self._truth.get(class_names)
        if cached is None:
            index = {c: i for i, c in enumerate(class_names)}
            unknown = sorted({str(lbl) for lbl in self._labels if lbl not in index})
            if unknown:
                raise InputError(f"optimize: label(s) {', '.join(map(repr, unknown[:10]))} are not classes of the system")
            cached = self._truth[class_names] = np.fromiter((index[str(lbl)] for lbl in self._labels), dtype=np.int64, count=len(self._labels))
        return cached

    def score(self, system: System) -> Score:
        """Train (and val) accuracy of one system: one pass over every row, chunked like the Scorer."""
        compiled = system.compile()
        config = self.config(system)
        method = config.method(self.method)
        sets = method.prompt_sets(compiled, config)
        truth = self.truth(compiled.class_names)
        if self._columns is not None and set(sets) <= _STANDARD_SETS:
            sims = {name: self._columns.get(texts) for name, texts in sets.items()}
            scores = np.empty((len(self._x), compiled.n_classes), dtype=np.float32)
            for start in range(0, len(scores), SCORING_CHUNK):
                rows = slice(start, start + SCORING_CHUNK)
                scores[rows] = method.score(Batch({k: v[rows] for k, v in sims.items()}, compiled, config))
        else:
            scores = Scorer(system, {name: self.embed(texts) for name, texts in sets.items()}, config, (self.method,)).scores(
                self._x, self.method)
        hits = scores.argmax(axis=1) == truth
        n = self.n_train
        probs = method.probabilities(scores[:n], config)
        confidence = float(np.mean(probs[np.arange(n), truth[:n]]))
        self.n_scored += 1
        val = float(hits[n:].mean()) if self.val is not None else None
        return Score(float(hits[:n].mean()), val, round(confidence, 9))

    def prefetch(self, systems: Iterable[System]) -> None:
        """Embed every prompt these systems need in one batched call (new wordings reach the model together)."""
        texts: dict[str, None] = {}
        for system in systems:
            compiled = system.compile()
            config = self.config(system)
            for prompts in config.method(self.method).prompt_sets(compiled, config).values():
                texts.update(dict.fromkeys(prompts))
        if texts and self._columns is not None:
            self._columns.get(list(texts))  # only texts never seen reach ``embed``
        elif texts:
            self.embed(list(texts))

    # ---------------------------------------------------------- evidence
    def group_probabilities(self, system: System, group: str) -> np.ndarray:
        """(n_train, options) probability of each option of ``group`` on the training rows."""
        g = system.group_names.index(group)
        prompts = system.groups[g].prompts()
        if self._columns is not None:
            sims = self._columns.get(prompts)[: self.n_train]
        else:
            sims = self._x[: self.n_train] @ l2_normalize(np.asarray(self.embed(prompts), dtype=np.float32)).T
        offsets = np.asarray([0, len(prompts)], dtype=np.int64)
        return group_softmax(sims, offsets, self.config(system).temperature)

    def class_evidence(self, system: System, group: str) -> np.ndarray:
        """(classes, options) mean probability of each option over each class's training rows."""
        probs = self.group_probabilities(system, group)
        truth = self.truth(system.class_names)[: self.n_train]
        n_classes = len(system.class_names)
        sums = np.zeros((n_classes, probs.shape[1]), dtype=np.float64)
        np.add.at(sums, truth, probs)
        counts = np.bincount(truth, minlength=n_classes)[:, None]
        return sums / np.maximum(counts, 1)

    # ------------------------------------------------------------ reports
    def report(self, system: System, part: str = "train") -> EvalReport:
        """The full evaluation (acc5, per class, confusions, question accuracy) on ``train`` or ``val``."""
        data = self.train if part == "train" else self.val
        if data is None:
            raise InputError(f"optimize: no {part} data to report on")
        return evaluate(self.scorer(system), data, (self.method,))


class _Columns:
    """Cosine of every row with every prompt text seen so far: a new text costs one product, a
    candidate system a gather of its Q columns (no (rows x D) x (D x Q) product per candidate).

    Stored one text per row (C order), grown by doubling up to ``COLUMN_CACHE_BYTES``; past
    that the table starts afresh, so memory stays bounded on long runs over large data.
    """

    def __init__(self, x: np.ndarray, embed: EmbedTexts):
        self.x = x
        self.embed = embed
        self.index: dict[str, int] = {}
        self.data = np.empty((64, len(x)), dtype=np.float32)

    def get(self, texts: Sequence[str]) -> np.ndarray:
        """(rows, len(texts)) cosines, columns in the order of ``texts``."""
        missing = [t for t in dict.fromkeys(texts) if t not in self.index]
        if missing:
            need = len(self.index) + len(missing)
            if need * self.data.shape[1] * 4 > COLUMN_CACHE_BYTES:
                self.index.clear()
                missing = list(dict.fromkeys(texts))
                need = len(missing)
            if need > len(self.data):
                grown = np.empty((max(need, 2 * len(self.data)), self.data.shape[1]), dtype=np.float32)
                grown[: len(self.index)] = self.data[: len(self.index)]
                self.data = grown
            start = len(self.index)
            vectors = l2_normalize(np.asarray(self.embed(missing), dtype=np.float32))
            self.data[start:need] = vectors @ self.x.T
            self.index.update((t, start + i) for i, t in enumerate(missing))
        return self.data[[self.index[t] for t in texts]].T


def _probe_system() -> System:
    """A one-group, two-class system: enough to ask a method which prompt sets it reads."""
    return System.from_dict({"groups": {"g": {"prompt": "{}", "options": ["a", "b"]}}, "rules": {"x": {"g": "a"}, "y": {"g": "b"}}})


def split_rows(labels: Sequence[str | None], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded, per-class split: about ``fraction`` of each class's rows go to validation.

    Classes with fewer than two rows stay whole in training; each class with two or
    more keeps at least one row on each side, so every class is seen while fitting.
    """
    if not 0.0 < fraction < 1.0:
        raise InputError(f"validation fraction must be between 0 and 1, got {fraction!r}")
    rng = np.random.default_rng(seed)
    by_class: dict[str | None, list[int]] = {}
    for row, label in enumerate(labels):
        by_class.setdefault(label, []).append(row)
    train: list[int] = []
    val: list[int] = []
    for label in sorted(by_class, key=str):
        rows = by_class[label]
        order = [rows[i] for i in rng.permutation(len(rows))]
        k = 0 if len(rows) < 2 else min(len(rows) - 1, max(1, round(fraction * len(rows))))
        val.extend(order[:k])
        train.extend(order[k:])
    return sorted(train), sorted(val)


__all__ = ["Objective", "Score", "split_rows"]
