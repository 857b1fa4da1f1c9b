"""Split conformal prediction: sets of classes that hold the true one with probability >= 1 - alpha.

Given a labelled calibration set exchangeable with the inputs to come, the
``ceil((n + 1)(1 - alpha)) / n`` quantile of the calibration inputs' nonconformity
scores is a threshold such that a new input's set (every class scoring at or below
it) holds its true class with probability at least ``1 - alpha`` (and at most
``1 - alpha + 1 / (n + 1)`` when scores have no ties). Two scores:

- ``lac`` (least ambiguous set-valued classifier): ``-log p(y | x)``, computed from
  log-scores so sure predictions do not all round to the same 0 (ties would break
  the upper bound);
- ``aps`` (adaptive prediction sets), with ``raps`` regularisation: the probability
  mass of the classes ranked above y plus a uniform share of y's own (randomised,
  seeded), plus ``lam x max(0, rank - k_reg)`` for RAPS. Sets adapt to how hard an
  input is.

Inputs are (B, N) log-scores: log-probabilities or any logits whose softmax is the
posterior (e.g. :func:`cotembed.scoring._calibration.log_posterior`). Pure numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from cotembed.errors import InputError

MIN_CALIBRATION = 20
"""Fewer calibration inputs cannot bound coverage usefully (at alpha 0.1 the guarantee's slack is 1/(n+1))."""
SCORES = ("lac", "aps", "raps")


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    log_probs: np.ndarray = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return log_probs


def lac_scores(logits: np.ndarray) -> np.ndarray:
    """(B, N) -log p(n | x) for every class, precise for sure predictions.

    -log p(c) = softplus(log sum_{n != c} exp(z_n - z_c)); the others' mass of the top
    class is summed directly (not as total - its own, which would round to 0).
    """
    z = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(z))
    top = z.argmax(axis=1)
    shift = z[rows, top][:, None]
    e = np.exp(z - shift)
    others = e.sum(axis=1, keepdims=True) - e
    e[rows, top] = 0.0
    others[rows, top] = e.sum(axis=1)
    with np.errstate(divide="ignore"):
        a = np.log(others) + shift - z  # -inf where nothing else has mass: then -log p = 0
    softplus: np.ndarray = np.where(a > 30, a, np.log1p(np.exp(np.minimum(a, 30))))
    return softplus


def aps_scores(logits: np.ndarray, u: np.ndarray, lam: float = 0.0, k_reg: int = 0) -> np.ndarray:
    """(B, N) APS (RAPS with ``lam > 0``) score of every class, with (B,) uniform draws ``u``."""
    p = np.exp(_log_softmax(np.asarray(logits, dtype=np.float64)))
    order = np.argsort(-p, axis=1, kind="mergesort")
    sorted_p = np.take_along_axis(p, order, axis=1)
    above = np.cumsum(sorted_p, axis=1) - sorted_p  # mass strictly above each ranked class
    rank = np.arange(1, p.shape[1] + 1)[None, :]
    ranked = above + u[:, None] * sorted_p + lam * np.maximum(rank - k_reg, 0)
    out: np.ndarray = np.empty_like(p)
    np.put_along_axis(out, order, ranked, axis=1)
    return out


@dataclass
class SplitConformal:
    """A calibrated set predictor: ``fit`` on labelled log-scores, ``predict`` sets for new ones."""

    alpha: float
    score: str = "lac"
    lam: float = 0.01
    k_reg: int = 1
    seed: int = 0
    threshold: float = math.nan
    n_calibration: int = 0
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and 0 < self.alpha < 1):
            raise InputError(f"alpha must be a number strictly between 0 and 1, got {self.alpha!r}")
        if self.score not in SCORES:
            raise InputError(f"conformal score {self.score!r}: choose one of {', '.join(SCORES)}")
        if not (math.isfinite(self.lam) and self.lam >= 0) or self.k_reg < 0:
            raise InputError(f"RAPS needs lam >= 0 and k_reg >= 0, got {self.lam!r}, {self.k_reg!r}")

    def _all_scores(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.score == "lac":
            return lac_scores(logits)
        lam = self.lam if self.score == "raps" else 0.0
        return aps_scores(logits, rng.random(len(logits)), lam, self.k_reg)

    def fit(self, logits: np.ndarray, labels: np.ndarray, class_names: Sequence[str] = ()) -> "SplitConformal":
        """Choose the threshold on a labelled calibration set (at least :data:`MIN_CALIBRATION` inputs)."""
        z, y = _check(logits, labels)
        if len(y) < MIN_CALIBRATION:
            raise InputError(f"conformal calibration needs at least {MIN_CALIBRATION} labelled inputs, got {len(y)}: "
                             "with fewer, the coverage guarantee is too loose to be useful")
        missing = sorted(set(range(z.shape[1])) - set(y.tolist()))
        if missing:
            names = [class_names[i] if i < len(class_names) else str(i) for i in missing]
            self.notes.append(f"{len(missing)} class(es) absent from the calibration set: {', '.join(names)}")
        scores = self._all_scores(z, np.random.default_rng(self.seed))[np.arange(len(y)), y]
        n = len(y)
        level = math.ceil((n + 1) * (1 - self.alpha))
        self.threshold = math.inf if level > n else float(np.sort(scores)[level - 1])
        self.n_calibration = n
        return self

    def predict(self, logits: np.ndarray, seed: int | None = None) -> np.ndarray:
        """(B, N) boolean membership of each class in each input's set."""
        if self.n_calibration == 0:
            raise InputError("conformal predictor used before fit")
        z = np.asarray(logits, dtype=np.float64)
        if z.ndim != 2 or not np.isfinite(z).all():
            raise InputError("conformal prediction needs finite (B, N) log-scores")
        rng = np.random.default_rng(self.seed + 1 if seed is None else seed)
        return self._all_scores(z, rng) <= self.threshold


def _check(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or y.shape != (len(z),):
        raise InputError(f"conformal: log-scores must be (B, N) with B labels, got {z.shape} and {y.shape}")
    if not np.isfinite(z).all():
        raise InputError("conformal: log-scores must be finite")
    if len(y) and (y.min() < 0 or y.max() >= z.shape[1]):
        raise InputError(f"conformal: labels must index the {z.shape[1]} classes")
    return z, y


def coverage(sets: np.ndarray, labels: np.ndarray) -> float:
    """Share of inputs whose set holds the true class."""
    return float(np.asarray(sets)[np.arange(len(labels)), np.asarray(labels)].mean())


def mean_set_size(sets: np.ndarray) -> float:
    return float(np.asarray(sets).sum(axis=1).mean())


__all__ = ["MIN_CALIBRATION", "SCORES", "SplitConformal", "aps_scores", "coverage", "lac_scores", "mean_set_size"]
