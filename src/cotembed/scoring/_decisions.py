"""Decisions on top of a prediction: abstain, a conformal set of classes, or several labels.

A :class:`Decisions` holds what was chosen (given or fitted on labelled data) and
turns one batch's arrays into per-input fields:

- **abstention**: an input whose fit score (:mod:`cotembed.scoring._posteriors`) is
  below the threshold gets no prediction (``prediction: null``, ``abstained: true``
  and the reason). The threshold is given, or chosen on labelled data for a target
  precision of the accepted inputs or a target coverage (:func:`parse_target`);
- **conformal**: a set of classes holding the true one with probability at least
  ``1 - alpha`` (split conformal, :class:`~cotembed.scoring._conformal.SplitConformal`,
  on the log of the probabilities in force);
- **multi-label**: every class whose own score (its rule support, no competition
  between classes) reaches its threshold.

Pure numpy; the classifier and the front ends fill and apply it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from cotembed.errors import InputError
from cotembed.scoring._conformal import SplitConformal
from cotembed.scoring._multilabel import Thresholds
from cotembed.scoring._openset import DEFAULT_FIT_SCORE, Threshold, threshold_for_coverage, threshold_for_precision

TARGETS = {"precision": threshold_for_precision, "coverage": threshold_for_coverage}
"""Targets an abstention threshold can be chosen for on labelled data."""
MULTILABEL_SCORE = "rule support"
"""The per-class score multi-label thresholds apply to (in [0, 1], no normalisation across classes)."""
LOG_FLOOR = -745.0
"""log of the smallest positive double: where a probability underflows to 0."""


def parse_target(text: str, flag: str = "--abstain-target") -> tuple[str, float]:
    """``precision=0.95`` or ``coverage=0.9`` -> (kind, value), the value a finite number in (0, 1]."""
    kind, sep, value = str(text).partition("=")
    kind = kind.strip().lower()
    if not sep or kind not in TARGETS:
        raise InputError(f"{flag} {text!r}: write precision=P or coverage=C, e.g. precision=0.95")
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"{flag} {text!r}: {value.strip()!r} is not a number") from None
    if not (math.isfinite(number) and 0 < number <= 1):
        raise InputError(f"{flag} {text!r}: the target must be a finite number in (0, 1]")
    return kind, number


def check_threshold(value: float, flag: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(float(value)):
        raise InputError(f"{flag}: the threshold must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Abstention:
    """Abstain when the predicted class's fit score is below ``threshold``."""

    threshold: float
    fit_score: str = DEFAULT_FIT_SCORE
    chosen_by: str = "given"
    """``given``, or the target it was chosen for (``precision >= 0.95``) and on how many inputs."""
    precision: float | None = None
    coverage: float | None = None
    """What the threshold gave on the data it was chosen on (None when given)."""

    def __post_init__(self) -> None:
        check_threshold(self.threshold, "abstain threshold")

    @classmethod
    def for_target(cls, target: str, fit_scores: np.ndarray, correct: np.ndarray,
                   fit_score: str = DEFAULT_FIT_SCORE) -> "Abstention":
        """The threshold meeting ``target`` (``precision=P`` / ``coverage=C``) on labelled inputs."""
        kind, value = parse_target(target)
        chosen: Threshold = TARGETS[kind](fit_scores, correct, value)
        return cls(chosen.value, fit_score, f"{chosen.target} on {len(np.ravel(correct))} labelled inputs",
                   chosen.precision, chosen.coverage)

    def abstains(self, fit_scores: np.ndarray) -> np.ndarray:
        return np.asarray(fit_scores, dtype=np.float64) < self.threshold

    def reason(self, fit_score: float) -> str:
        return f"{self.fit_score} {fit_score:.4g} is below the threshold {self.threshold:.4g}: no class fits well enough"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fit_score": self.fit_score, "threshold": self.threshold, "chosen_by": self.chosen_by}
        if self.precision is not None:
            out.update(precision=self.precision, coverage=self.coverage)
        return out


@dataclass(frozen=True)
class Decisions:
    """What is decided per input besides the top class; each part is optional."""

    fit_score: str = DEFAULT_FIT_SCORE
    abstention: Abstention | None = None
    conformal: SplitConformal | None = None
    multilabel: Thresholds | None = None

    def to_dict(self) -> dict[str, Any]:
        """Provenance: the settings in force (thresholds, alpha, ...)."""
        out: dict[str, Any] = {"fit_score": self.fit_score}
        if self.abstention is not None:
            out["abstain"] = self.abstention.to_dict()
        if self.conformal is not None:
            c = self.conformal
            out["conformal"] = {"alpha": c.alpha, "score": c.score, "threshold": c.threshold,
                                "n_calibration": c.n_calibration, "notes": list(c.notes)}
        if self.multilabel is not None:
            values = self.multilabel.values
            out["multi_label"] = {"score": MULTILABEL_SCORE, "per_class": self.multilabel.per_class,
                                  "thresholds": [float(v) for v in values]}
        return out


def log_probabilities(probs: np.ndarray) -> np.ndarray:
    """Log of probabilities, floored where they underflow (conformal scores need finite logs)."""
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(np.asarray(probs, dtype=np.float64)), LOG_FLOOR)


def conformal_sets(conformal: SplitConformal, probs: np.ndarray, seed: int | None = None) -> np.ndarray:
    """(B, N) membership of each class in each input's conformal set."""
    return conformal.predict(log_probabilities(probs), seed=seed)


def fit_conformal(alpha: float, probs: np.ndarray, labels: np.ndarray, score: str = "lac",
                  class_names: tuple[str, ...] = (), seed: int = 0) -> SplitConformal:
    """A split-conformal predictor fitted on labelled calibration probabilities."""
    return SplitConformal(alpha, score=score, seed=seed).fit(log_probabilities(probs), labels, class_names)


LABEL_SEPARATOR = ";"
"""Separates the classes of a multi-label input's label (``"winged;black"``)."""


def multilabel_targets(labels: Sequence[str | None], class_names: Sequence[str],
                       resolve: Callable[[str], str | None]) -> np.ndarray:
    """(B, N) membership from labels naming one class or several separated by ``;``; unknown names are an error."""
    index = {c: n for n, c in enumerate(class_names)}
    out = np.zeros((len(labels), len(class_names)), dtype=bool)
    unknown: list[str] = []
    for i, label in enumerate(labels):
        if label is None:
            raise InputError(f"multi-label data: input {i} has no label")
        for part in (p.strip() for p in label.split(LABEL_SEPARATOR)):
            name = resolve(part) if part else None
            if name is None:
                unknown.append(part)
            else:
                out[i, index[name]] = True
    if unknown:
        shown = ", ".join(map(repr, dict.fromkeys(unknown[:10])))
        raise InputError(f"multi-label data: {len(unknown)} label(s) are not classes of the system: {shown}")
    return out


__all__ = ["LABEL_SEPARATOR", "multilabel_targets", "LOG_FLOOR", "MULTILABEL_SCORE", "TARGETS", "Abstention", "Decisions", "check_threshold", "conformal_sets",
           "fit_conformal", "log_probabilities", "parse_target"]
