"""Multi-label scoring: every class scored on its own, thresholds chosen on labelled data.

When classes overlap (an image can be "winged" and "lives in snow" at once), the
softmax across classes that single-label scoring uses is wrong: it makes classes
compete. Here each class gets its own score, its **rule support**

    s_n(x) = sum_g w_g m_g(n) / sum_g w_g   in [0, 1],

the share of the class's rule mass the answers support (``m_g(n)``: the mass of
the options class n accepts in group g; a group where the class accepts every
option always supports it fully). No normalisation across classes, so adding a
class never changes another's score. A class is predicted when its score reaches
its threshold: one global threshold, or one per class, chosen to maximise F1 on
labelled data (per-class thresholds fall back to the global one for a class with
no positive example). Figures: per-class precision, recall and F1, micro F1 and
mAP (mean over classes of average precision). Pure numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cotembed.errors import InputError
from cotembed.scoring._calibration import GroupRules, group_log_masses


def class_support(similarities: np.ndarray, rules: GroupRules, temperature: float) -> np.ndarray:
    """(B, N) independent per-class scores in [0, 1] (rule support, not normalised across classes)."""
    masses = np.exp(group_log_masses(similarities, rules, temperature))
    scores: np.ndarray = np.einsum("bgn,g->bn", masses, rules.weights) / rules.weights.sum()
    return scores


def _check(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets).astype(bool)
    if s.ndim != 2 or s.shape != t.shape:
        raise InputError(f"multi-label: scores and targets must both be (B, N), got {s.shape} and {t.shape}")
    if not np.isfinite(s).all():
        raise InputError("multi-label: scores must be finite")
    return s, t


def _best_f1_threshold(scores: np.ndarray, positive: np.ndarray) -> float:
    """The threshold (accept when score >= it) with the best F1 on one column; ties: the higher threshold."""
    order = np.argsort(-scores, kind="mergesort")
    s, hit = scores[order], positive[order]
    tp = np.cumsum(hit)
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]
    f1 = 2 * tp[last] / (last + 1 + positive.sum())
    i = int(np.argmax(f1))
    return float(s[last[i]])


@dataclass(frozen=True)
class Thresholds:
    """Per-class thresholds (all equal for a global one); a class is predicted when its score >= its threshold."""

    values: np.ndarray
    per_class: bool

    def predict(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) >= self.values[None, :]


def fit_thresholds(scores: np.ndarray, targets: np.ndarray, per_class: bool = True) -> Thresholds:
    """Thresholds maximising F1 on labelled data: the pooled (micro) F1 for a global one, each class's own F1 per class."""
    s, t = _check(scores, targets)
    if not len(s):
        raise InputError("multi-label: choosing thresholds needs labelled inputs")
    global_value = _best_f1_threshold(s.ravel(), t.ravel())
    values = np.full(s.shape[1], global_value)
    if per_class:
        for n in range(s.shape[1]):
            if t[:, n].any():
                values[n] = _best_f1_threshold(s[:, n], t[:, n])
    return Thresholds(values, per_class)


def given_threshold(value: float, n_classes: int) -> Thresholds:
    """One global threshold given by the user (must be finite)."""
    if not (isinstance(value, (int, float)) and math.isfinite(value)):
        raise InputError(f"multi-label threshold must be a finite number, got {value!r}")
    return Thresholds(np.full(n_classes, float(value)), False)


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under one class's precision/recall steps (NaN for a class without positives)."""
    pos = np.asarray(positive, dtype=bool)
    if not pos.any():
        return math.nan
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    hit = pos[order]
    precision = np.cumsum(hit) / np.arange(1, len(hit) + 1)
    return float(precision[hit].sum() / pos.sum())


def multilabel_report(scores: np.ndarray, targets: np.ndarray, predicted: np.ndarray,
                      class_names: Sequence[str] = ()) -> dict[str, object]:
    """Per-class precision/recall/F1/AP, micro F1 and mAP of predicted (B, N) label sets."""
    s, t = _check(scores, targets)
    p = np.asarray(predicted, dtype=bool)
    tp = (p & t).sum(axis=0).astype(np.float64)
    fp = (p & ~t).sum(axis=0)
    fn = (~p & t).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), math.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), math.nan)
    ap = np.array([average_precision(s[:, n], t[:, n]) for n in range(s.shape[1])])
    names = list(class_names) or [str(n) for n in range(s.shape[1])]
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
    return {
        "per_class": {names[n]: {"precision": float(precision[n]), "recall": float(recall[n]), "f1": float(f1[n]),
                                 "ap": float(ap[n]), "support": int(t[:, n].sum())} for n in range(s.shape[1])},
        "micro_f1": float(micro),
        "map": float(np.nanmean(ap)) if np.isfinite(ap).any() else math.nan,
        "mean_labels": float(p.sum(axis=1).mean()) if len(p) else math.nan,
    }


__all__ = ["Thresholds", "average_precision", "class_support", "fit_thresholds", "given_threshold", "multilabel_report"]
