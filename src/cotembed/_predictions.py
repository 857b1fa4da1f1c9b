"""What a classifier returns: one input's :class:`Prediction` and :class:`Explanation`, and how
scores and the decisions in force (abstention, conformal sets, multi-label thresholds)
become predictions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from cotembed.data import Sample
from cotembed.scoring._decisions import Decisions, conformal_sets
from cotembed.scoring._posteriors import DEFAULT_PROBABILITIES, Scored


@dataclass(frozen=True)
class Prediction:
    """One input's result. ``prediction`` is None when the classifier abstained (``reason`` says why;
    ``candidate`` is the class it would have named)."""

    source: str
    prediction: str | None
    score: float
    top: list[tuple[str, float]]
    label: str | None = None
    probability: float | None = None
    """Probability of the top class (calibrated posterior unless ``probabilities="normalised"``)."""
    fit_score: float | None = None
    """Absolute fit of the top class (see :mod:`cotembed.scoring._posteriors`); None without option prompts."""
    top_probabilities: tuple[float, ...] = ()
    abstained: bool = False
    reason: str | None = None
    candidate: str | None = None
    prediction_set: tuple[str, ...] | None = None
    """Conformal set of classes (with ``with_conformal``), most probable first."""
    labels: tuple[tuple[str, float], ...] | None = None
    """Multi-label: every class whose own score reaches its threshold, with that score."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"input": self.source, "prediction": self.prediction, "score": self.score,
                               "probability": self.probability, "fit_score": self.fit_score,
                               "abstained": self.abstained}
        if self.abstained:
            out.update(reason=self.reason, candidate=self.candidate)
        if self.label is not None:
            out["label"] = self.label
        if self.prediction_set is not None:
            out["set"] = list(self.prediction_set)
        if self.labels is not None:
            out["labels"] = [{"class": c, "score": s} for c, s in self.labels]
        probs = self.top_probabilities or (None,) * len(self.top)
        out["top"] = [{"class": c, "score": s, "probability": p} for (c, s), p in zip(self.top, probs)]
        return out


@dataclass(frozen=True)
class QuestionAnswer:
    group: str
    prompt: str
    answer: str
    probabilities: dict[str, float]


@dataclass(frozen=True)
class ClassEvidence:
    class_name: str
    score: float
    contributions: dict[str, float]
    """The method's additive parts of the score (per question for cot, cot-log, hybrid;
    hybrid adds ``class name``); empty for methods whose score does not split."""
    probability: float | None = None
    """The class's probability (calibrated posterior unless ``probabilities="normalised"``)."""


@dataclass(frozen=True)
class Explanation:
    source: str
    method: str
    prediction: str
    questions: list[QuestionAnswer]
    top: list[ClassEvidence]
    model: str
    system_hash: str
    temperature: float
    detail: Any = None
    """The method's own account of this input (adaptive: the questions asked, in order), or None."""
    probabilities: str = DEFAULT_PROBABILITIES
    fit_score: float | None = None
    """Fit score (``fit_score_name``): of the predicted class, or of the input for ``energy``."""
    fit_score_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        detail = {} if self.detail is None else {self.method: self.detail.to_dict()}
        return {
            "input": self.source,
            "method": self.method,
            "prediction": self.prediction,
            "model": self.model,
            "system_hash": self.system_hash,
            "temperature": self.temperature,
            "probabilities": self.probabilities,
            "fit_score": self.fit_score,
            "fit_score_name": self.fit_score_name,
            "questions": [
                {"group": q.group, "prompt": q.prompt, "answer": q.answer, "probabilities": q.probabilities}
                for q in self.questions
            ],
            "top": [{"class": c.class_name, "score": c.score, "probability": c.probability,
                     "contributions": c.contributions} for c in self.top],
            **detail,
        }


def predictions_of(samples: Sequence[Sample], scored: Scored, top_k: int, classes: np.ndarray,
                   decisions: Decisions) -> list[Prediction]:
    """Per input: top classes, probability, fit score, and the decisions in force."""
    d = decisions
    scores, probs, fit = scored.scores, scored.probabilities, scored.fit
    order = np.argsort(-scores, axis=1, kind="stable")[:, : max(1, top_k)]
    abstains = d.abstention.abstains(fit) if d.abstention is not None and fit is not None else np.zeros(len(scores), bool)
    sets = conformal_sets(d.conformal, probs) if d.conformal is not None else None
    chosen = d.multilabel.predict(scored.support) if d.multilabel is not None and scored.support is not None else None
    out = []
    for i, (sample, idx) in enumerate(zip(samples, order)):
        top = [(str(classes[n]), float(scores[i, n])) for n in idx]
        fit_i = float(fit[i]) if fit is not None else None
        abstained = bool(abstains[i])
        members = None
        if sets is not None:
            ranked = np.argsort(-probs[i], kind="stable")
            members = tuple(str(classes[n]) for n in ranked if sets[i, n])
        labels = None
        if chosen is not None and scored.support is not None:
            picked = np.flatnonzero(chosen[i])
            picked = picked[np.argsort(-scored.support[i, picked], kind="stable")]
            labels = tuple((str(classes[n]), float(scored.support[i, n])) for n in picked)
        out.append(Prediction(
            sample.source, None if abstained else top[0][0], top[0][1], top, sample.label,
            probability=float(probs[i, idx[0]]), fit_score=fit_i,
            top_probabilities=tuple(float(probs[i, n]) for n in idx), abstained=abstained,
            reason=d.abstention.reason(fit_i) if abstained and d.abstention is not None and fit_i is not None else None,
            candidate=top[0][0] if abstained else None, prediction_set=members, labels=labels))
    return out


__all__ = ["ClassEvidence", "Explanation", "Prediction", "QuestionAnswer", "predictions_of"]
