"""Calibrated class posteriors for chain-of-thought scores, and the figures that judge them.

CoT's own score (a weighted *sum* of the class's option probabilities, rescaled to sum
to 1) is a ranking, not a probability: a sure answer to four questions out of 28
classes comes out near 0.25. The principled posterior is the one ``cot-log``
approximates: if the groups' answers are independent given the class, then

    log p(class n | x) = sum_g w_g log m_g(n) - log Z,
    m_g(n) = the probability mass, within group g, of the options class n accepts
             (a softmax of ``temperature x cosine`` over the group's options),

the *product-of-groups likelihood*. The groups are not really independent and the
softmax temperature is the model's, not one fitted to these questions, so the raw
product is overconfident; two kinds of parameters fix that, both stored in the
system file (so they are reviewed and enter its fingerprint): the ``temperature``
of the within-group softmax and the groups' ``weight``.

- :func:`fit_posterior` chooses them on labelled data by minimising the negative
  log-likelihood (NLL): the temperature by a bounded search on its logarithm, the
  group weights (optional) by Newton steps (the NLL is convex in the weights);
  per-group weights are kept only where they lower the NLL on held-out folds.
- :func:`label_free_temperature` needs no labels: the product posterior at the
  model's own temperature (times :data:`LABEL_FREE_SCALE`, 1, checked on calibration
  splits, never on the data it is reported on). For a batch, :func:`fit_on_agreement`
  fits the temperature so that the posterior's mean confidence equals how much of
  the predicted class's rule the batch's answers support (each group's top answer is
  one vote). It is an option, not the default: on critters hard it sets the
  temperature below the one the labelled fit finds and the posterior turns
  underconfident (``bench_calibration.py`` shows both).
- :func:`ece`, :func:`nll`, :func:`brier` and :func:`reliability` measure the result.

Everything is numpy on arrays; nothing here imports a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from cotembed.errors import InputError
from cotembed.scoring._functions import group_log_softmax

if TYPE_CHECKING:
    from cotembed.system import CompiledSystem

TINY = np.float64(np.finfo(np.float32).tiny)
ECE_BINS = 15
"""Equal-width confidence bins for ECE and the reliability diagram (the usual choice)."""
LABEL_FREE_SCALE = 1.0
"""Temperature / model temperature used when no labels are given: the product-of-groups posterior at
the model's own logit scale (on the critters calibration splits it has ECE 0.005 easy and 0.09 hard,
the fitted ratios being 2 and 0.5; ``bench_calibration.py`` reports it on other splits)."""
PRIOR_SD = 1.0
"""Prior on log(fitted / starting temperature), N(0, PRIOR_SD^2): without it, separable data (every
input right) drive the temperature to the top of its range and the NLL to 0, an overconfident fit."""
AGREEMENT_RANGE = (0.1, 10.0)
"""Multiples of the starting temperature a label-free agreement fit may reach."""
TEMPERATURE_RANGE = (1e-3, 1e4)
"""Multiples of the starting temperature the search may reach (it is on a log scale)."""


# ----------------------------------------------------------------- structure
@dataclass(frozen=True)
class GroupRules:
    """The parts of a compiled system the posterior needs, as arrays.

    ``offsets`` (G + 1) delimit each group's options; ``accepted`` (Q, N) is 1 where
    class n accepts option q; ``weights`` (G,) are the groups' weights.
    """

    offsets: np.ndarray
    accepted: np.ndarray
    weights: np.ndarray
    group_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()

    @classmethod
    def from_compiled(cls, compiled: "CompiledSystem") -> "GroupRules":
        """From a compiled system (its rule matrix holds the weights)."""
        offsets = np.asarray(compiled.offsets, dtype=np.intp)
        rules = np.asarray(compiled.rule_matrix, dtype=np.float64)
        weights = np.array([rules[offsets[g]:offsets[g + 1]].max() for g in range(len(offsets) - 1)])
        return cls(offsets, (rules > 0).astype(np.float64), weights,
                   tuple(compiled.group_names), tuple(compiled.class_names))

    @property
    def n_groups(self) -> int:
        return len(self.offsets) - 1


def group_log_masses(similarities: np.ndarray, rules: GroupRules, temperature: float) -> np.ndarray:
    """(B, G, N): log of the mass each group's softmax puts on the options each class accepts."""
    log_p = group_log_softmax(similarities, rules.offsets, temperature).astype(np.float64)
    out = np.empty((len(log_p), rules.n_groups, rules.accepted.shape[1]))
    for g in range(rules.n_groups):
        block = slice(rules.offsets[g], rules.offsets[g + 1])
        top = log_p[:, block].max(axis=1, keepdims=True)
        mass = np.exp(log_p[:, block] - top) @ rules.accepted[block]
        out[:, g] = np.log(np.maximum(mass, TINY)) + top
    return out


def log_posterior(log_masses: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B, N) log p(class | x) from (B, G, N) log masses and (G,) weights (the product-of-groups likelihood)."""
    logits = np.einsum("bgn,g->bn", log_masses, np.asarray(weights, dtype=np.float64))
    logits -= logits.max(axis=1, keepdims=True)
    log_probs: np.ndarray = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return log_probs


def product_posterior(similarities: np.ndarray, rules: GroupRules, temperature: float,
                      weights: np.ndarray | None = None) -> np.ndarray:
    """(B, N) calibrated CoT probabilities from option cosines (rows sum to 1)."""
    w = rules.weights if weights is None else np.asarray(weights, dtype=np.float64)
    probs: np.ndarray = np.exp(log_posterior(group_log_masses(similarities, rules, temperature), w))
    return probs


def temperature_scaled(scores: np.ndarray, scale: float) -> np.ndarray:
    """Any method's raw scores as softmax(scale x scores): the generic posterior, argmax unchanged."""
    z = np.asarray(scores, dtype=np.float64) * scale
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probs


# ------------------------------------------------------------------- metrics
def _check_probs(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if p.ndim != 2 or y.shape != (len(p),):
        raise InputError(f"probabilities must be (B, N) with B labels, got {p.shape} and {y.shape}")
    if not np.isfinite(p).all():
        raise InputError("probabilities must be finite")
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise InputError(f"labels must index the {p.shape[1]} classes")
    return p, y


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-probability of the true class."""
    p, y = _check_probs(probs, labels)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], TINY, 1.0)).mean()) + 0.0 if len(y) else math.nan  # no -0.0


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared distance between the probability row and the one-hot label (0 best, 2 worst)."""
    p, y = _check_probs(probs, labels)
    if not len(y):
        return math.nan
    target = np.zeros_like(p)
    target[np.arange(len(y)), y] = 1.0
    return float(((p - target) ** 2).sum(axis=1).mean())


@dataclass(frozen=True)
class Reliability:
    """Per confidence bin: inputs, mean confidence and accuracy of the top-1 prediction."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean |accuracy - confidence| gap."""
        total = self.counts.sum()
        if not total:
            return math.nan
        gap = np.abs(np.nan_to_num(self.accuracy) - np.nan_to_num(self.confidence))
        return float((self.counts * gap).sum() / total)

    def to_dict(self) -> dict[str, object]:
        return {"edges": self.edges.tolist(), "counts": self.counts.tolist(),
                "confidence": [None if math.isnan(v) else float(v) for v in self.confidence],
                "accuracy": [None if math.isnan(v) else float(v) for v in self.accuracy], "ece": self.ece}


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Reliability-diagram data: inputs binned by top-1 confidence (empty bins are NaN)."""
    p, y = _check_probs(probs, labels)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, conf, minlength=bins) / counts
        acc = np.bincount(which, correct, minlength=bins) / counts
    return Reliability(edges, counts, mean_conf, acc)


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top-1 prediction (equal-width bins)."""
    return reliability(probs, labels, bins).ece


def calibration_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, ECE, NLL and Brier in one mapping (the figures ``calibrate`` reports)."""
    p, y = _check_probs(probs, labels)
    return {"accuracy": float((p.argmax(axis=1) == y).mean()) if len(y) else math.nan,
            "ece": ece(p, y), "nll": nll(p, y), "brier": brier(p, y)}


# ------------------------------------------------------------------- fitting
def _golden(f: Callable[[float], float], lo: float, hi: float, tol: float = 1e-3) -> float:
    """Minimum of f on [lo, hi] after a coarse grid (guards against a non-convex start)."""
    grid = np.linspace(lo, hi, 25)
    values = [f(x) for x in grid]
    i = int(np.argmin(values))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    best = (a + b) / 2
    return best if f(best) <= values[i] else float(grid[i])


def _nll_of(log_masses: np.ndarray, weights: np.ndarray, labels: np.ndarray) -> float:
    lp = log_posterior(log_masses, weights)
    return float(-lp[np.arange(len(labels)), labels].mean())


def fit_weights(log_masses: np.ndarray, labels: np.ndarray, start: np.ndarray, ridge: float = 1e-3,
                steps: int = 50) -> np.ndarray:
    """Group weights minimising NLL (+ a small ridge toward ``start``) by damped Newton steps.

    The posterior's logits are linear in the weights, so the NLL is convex in them:
    gradient = E_p[L_g] - L_g[y], Hessian = the posterior covariance of L.
    Weights stay positive (floored at 1e-6 of the largest) as the system requires.
    """
    w = np.asarray(start, dtype=np.float64).copy()
    rows = np.arange(len(labels))
    for _ in range(steps):
        p = np.exp(log_posterior(log_masses, w))  # (B, N)
        expected = np.einsum("bgn,bn->bg", log_masses, p)
        grad = (expected - log_masses[rows, :, labels]).mean(axis=0) + ridge * (w - start)
        centred = log_masses - expected[:, :, None]
        hess = np.einsum("bgn,bhn,bn->gh", centred, centred, p) / len(labels) + ridge * np.eye(len(w))
        step = np.linalg.solve(hess + 1e-9 * np.eye(len(w)), grad)
        current = _nll_of(log_masses, w, labels)
        t = 1.0
        while t > 1e-4:
            trial = np.maximum(w - t * step, 1e-6 * max(w.max(), 1e-6))
            if _nll_of(log_masses, trial, labels) <= current:
                break
            t /= 2
        else:
            break
        if np.abs(trial - w).max() < 1e-7:
            w = trial
            break
        w = trial
    return w


@dataclass
class PosteriorFit:
    """A fitted posterior: the system temperature and group weights to store, and the evidence."""

    temperature: float
    weights: np.ndarray
    start_temperature: float
    start_weights: np.ndarray
    per_group: bool
    nll_before: float
    nll_after: float
    notes: list[str] = field(default_factory=list)

    def group_weights(self, names: Sequence[str]) -> dict[str, float]:
        return {n: float(w) for n, w in zip(names, self.weights)}


def _check_labelled(similarities: np.ndarray, labels: np.ndarray, rules: GroupRules) -> tuple[np.ndarray, np.ndarray]:
    sims = np.asarray(similarities, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    if sims.ndim != 2 or sims.shape[1] != rules.accepted.shape[0] or y.shape != (len(sims),):
        raise InputError(f"similarities must be (B, {rules.accepted.shape[0]}) with B labels, got {sims.shape}, {y.shape}")
    if not np.isfinite(sims).all():
        raise InputError("similarities must be finite")
    if len(y) < 2:
        raise InputError(f"fitting a posterior needs at least 2 labelled inputs, got {len(y)}")
    return sims, y


def missing_classes(labels: np.ndarray, class_names: Sequence[str]) -> list[str]:
    """Classes with no labelled input (a fit still runs; callers state them)."""
    seen = set(np.asarray(labels, dtype=np.int64).tolist())
    return [c for i, c in enumerate(class_names) if i not in seen]


def _fit_temperature(sims: np.ndarray, y: np.ndarray, rules: GroupRules, weights: np.ndarray, t0: float) -> float:
    lo, hi = (math.log(t0 * f) for f in TEMPERATURE_RANGE)
    cache: dict[float, float] = {}
    centre, spread = math.log(t0), 2 * PRIOR_SD**2 * len(y)

    def loss(log_t: float) -> float:
        if log_t not in cache:
            prior = (log_t - centre) ** 2 / spread
            cache[log_t] = _nll_of(group_log_masses(sims, rules, math.exp(log_t)), weights, y) + prior
        return cache[log_t]

    return math.exp(_golden(loss, lo, hi))


def fit_posterior(similarities: np.ndarray, labels: np.ndarray, rules: GroupRules, temperature: float,
                  per_group: bool | None = None, folds: int = 2, seed: int = 0) -> PosteriorFit:
    """Fit the temperature (and, where it helps, per-group weights) by minimising NLL.

    The temperature's NLL carries the prior :data:`PRIOR_SD` on its ratio to ``temperature``.

    ``per_group``: True fits the weights, False keeps the system's, None (default)
    fits them only if doing so lowers the NLL on ``folds`` held-out folds.
    """
    sims, y = _check_labelled(similarities, labels, rules)
    start_w = rules.weights.astype(np.float64)
    notes = []
    if rules.class_names:
        missing = missing_classes(y, rules.class_names)
        if missing:
            notes.append(f"{len(missing)} class(es) have no labelled input: {', '.join(missing)}")
    before = _nll_of(group_log_masses(sims, rules, temperature), start_w, y)
    temp = _fit_temperature(sims, y, rules, start_w, temperature)
    weights = start_w
    if per_group is None:
        per_group = rules.n_groups > 1 and _weights_help(sims, y, rules, temp, folds, seed)
        notes.append("per-group weights " + ("lower" if per_group else "do not lower") + " the held-out NLL: "
                     + ("fitted" if per_group else "kept"))
    if per_group:
        weights = fit_weights(group_log_masses(sims, rules, temp), y, start_w)
        temp = _fit_temperature(sims, y, rules, weights, temp)
        weights = fit_weights(group_log_masses(sims, rules, temp), y, weights)
    after = _nll_of(group_log_masses(sims, rules, temp), weights, y)
    return PosteriorFit(temp, weights, temperature, start_w, bool(per_group), before, after, notes)


def _weights_help(sims: np.ndarray, y: np.ndarray, rules: GroupRules, temp: float, folds: int, seed: int) -> bool:
    order = np.random.default_rng(seed).permutation(len(y))
    parts = np.array_split(order, max(folds, 2))
    shared = per = 0.0
    for k, test in enumerate(parts):
        train = np.concatenate([p for j, p in enumerate(parts) if j != k])
        if len(train) < 2 or not len(test):
            return False
        t = _fit_temperature(sims[train], y[train], rules, rules.weights, temp)
        shared += _nll_of(group_log_masses(sims[test], rules, t), rules.weights, y[test])
        w = fit_weights(group_log_masses(sims[train], rules, temp), y[train], rules.weights)
        t = _fit_temperature(sims[train], y[train], rules, w, temp)
        per += _nll_of(group_log_masses(sims[test], rules, t), w, y[test])
    return per < shared


def fit_scale(scores: np.ndarray, labels: np.ndarray, start: float = 1.0) -> float:
    """The scale s minimising NLL of softmax(s x scores): temperature scaling for any method."""
    z = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or y.shape != (len(z),) or len(y) < 2 or not np.isfinite(z).all():
        raise InputError("temperature scaling needs finite (B, N) scores and B >= 2 labels")
    rows = np.arange(len(y))

    def loss(log_s: float) -> float:
        p = temperature_scaled(z, math.exp(log_s))
        return float(-np.log(np.maximum(p[rows, y], TINY)).mean())

    lo, hi = (math.log(start * f) for f in TEMPERATURE_RANGE)
    return math.exp(_golden(loss, lo, hi))


# --------------------------------------------------------------- label-free
def label_free_temperature(model_temperature: float, scale: float = LABEL_FREE_SCALE) -> float:
    """The temperature used without labels: the model's, times a ratio chosen on calibration splits."""
    if not (math.isfinite(model_temperature) and model_temperature > 0 and math.isfinite(scale) and scale > 0):
        raise InputError(f"temperature and scale must be positive finite numbers, got {model_temperature!r}, {scale!r}")
    return model_temperature * scale


def group_agreement(similarities: np.ndarray, rules: GroupRules, predicted: np.ndarray) -> np.ndarray:
    """(B,) share of the groups (by weight) whose top option the predicted class accepts."""
    sims = np.asarray(similarities)
    agree = np.zeros(len(sims))
    for g in range(rules.n_groups):
        block = slice(rules.offsets[g], rules.offsets[g + 1])
        top = sims[:, block].argmax(axis=1) + rules.offsets[g]
        agree += rules.weights[g] * rules.accepted[top, predicted]
    agreement: np.ndarray = agree / rules.weights.sum()
    return agreement


def fit_on_agreement(similarities: np.ndarray, rules: GroupRules, temperature: float) -> float:
    """A temperature fitted without labels: the batch's mean top-1 confidence is made to equal
    the batch's mean group agreement (how much of the predicted class's rule the answers support)."""
    sims = np.asarray(similarities, dtype=np.float32)
    if sims.ndim != 2 or not len(sims) or not np.isfinite(sims).all():
        raise InputError("a label-free fit needs a non-empty batch of finite similarities")

    def gap(log_t: float) -> float:
        p = np.exp(log_posterior(group_log_masses(sims, rules, math.exp(log_t)), rules.weights))
        target = group_agreement(sims, rules, p.argmax(axis=1)).mean()
        return float((p.max(axis=1).mean() - target) ** 2)

    lo, hi = (math.log(temperature * f) for f in AGREEMENT_RANGE)
    return math.exp(_golden(gap, lo, hi))


__all__ = [
    "AGREEMENT_RANGE", "ECE_BINS", "LABEL_FREE_SCALE", "PRIOR_SD", "GroupRules", "PosteriorFit", "Reliability", "brier", "calibration_metrics",
    "ece", "fit_on_agreement", "fit_posterior", "fit_scale", "fit_weights", "group_agreement", "group_log_masses",
    "label_free_temperature", "log_posterior", "missing_classes", "nll", "product_posterior", "reliability",
    "temperature_scaled",
]
