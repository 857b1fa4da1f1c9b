"""Few-shot scoring from a labelled support set: class prototypes, Gaussian discriminant, and fusion with the system.

A handful of labelled examples per class carries information a hand-written system
lacks: what the model's embeddings of each class actually look like. Three fitted
objects use it, all numpy on embeddings that are already computed (the cache):

- :class:`PrototypeClassifier`: the mean of each class's unit embeddings; cosine to it.
- :class:`GaussianDiscriminant`: class means with one shared covariance, shrunk towards
  a scaled identity (closed form, linear discriminant), so directions in which
  examples of one class vary count less than directions that separate classes.
- :class:`FusedClassifier`: the system's zero-shot posterior (CoT, hybrid, ...) as a
  prior, combined with one of the two above. The mixing weight is chosen by
  leave-one-out on the support set alone; test inputs are never read while fitting.

Classes without examples keep their zero-shot probability: the few-shot posterior only
redistributes, among the classes that have examples, the zero-shot mass those classes
hold together (:func:`merge_with_zero_shot`). So a class nobody gave examples for is
neither wiped out nor boosted, and with examples for every class the merge is the
few-shot posterior itself.

Scikit-learn shaped: ``__init__`` stores parameters, ``fit`` returns the object and
fitted state ends in ``_``. Labels are class indices (``0 .. n_classes - 1``), zero-shot
inputs are (rows, n_classes) matrices in the same class order.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from cotembed.errors import InputError
from cotembed.scoring._functions import l2_normalize

PROBABILITY_FLOOR = 1e-12
"""Probabilities are clipped here before logs, so a zero never becomes -inf."""

DEFAULT_PROTOTYPE_TEMPERATURE = 20.0
"""Scale of cosine logits for the prototype posterior (fusion rescales it to the prior's spread anyway)."""

DEFAULT_SHRINKAGE = 0.75
"""GDA: share of the scaled identity in the covariance; chosen by bench_shots.py's sweep on critters
hard (system_paraphrased.yaml; mean accuracy over 1..16 shots) and checked there on the other tasks."""

DEFAULT_FUSION_WEIGHTS = tuple(round(0.05 * i, 2) for i in range(21))
"""Candidate weights of the few-shot posterior in the fusion (0: zero-shot alone, 1: few-shot alone)."""



# --------------------------------------------------------------------- helpers
def check_support(embeddings: np.ndarray, labels: Sequence[int] | np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit (n, D) float32 embeddings and (n,) int labels, or an InputError saying what is wrong."""
    x = np.asarray(embeddings, dtype=np.float32)
    y = np.asarray(labels)
    if x.ndim != 2 or len(x) == 0:
        raise InputError(f"support embeddings must be a non-empty (n, D) matrix, got shape {x.shape}")
    if y.shape != (len(x),):
        raise InputError(f"support set: {len(x)} embeddings but {y.size} labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"support labels must be class indices (integers), got {y.dtype}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise InputError(f"n_classes must be a positive whole number, got {n_classes!r}")
    if y.min() < 0 or y.max() >= n_classes:
        raise InputError(f"support labels must lie in 0..{n_classes - 1}, got {int(y.min())}..{int(y.max())}")
    if not np.isfinite(x).all():
        raise InputError("support embeddings contain NaN or infinite values")
    return l2_normalize(x), y.astype(np.int64)


def check_zero_shot(matrix: np.ndarray | None, rows: int, n_classes: int, what: str) -> np.ndarray | None:
    """A (rows, n_classes) finite float matrix (or None), else an InputError naming ``what``."""
    if matrix is None:
        return None
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (rows, n_classes):
        raise InputError(f"{what}: expected shape ({rows}, {n_classes}), got {m.shape}")
    if not np.isfinite(m).all():
        raise InputError(f"{what}: contains NaN or infinite values")
    return m


def log_posterior(probabilities: np.ndarray) -> np.ndarray:
    """Row-normalised log-probabilities, zeros clipped at :data:`PROBABILITY_FLOOR`."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), PROBABILITY_FLOOR, None)
    log_probs: np.ndarray = np.log(p / p.sum(axis=1, keepdims=True))
    return log_probs


def log_softmax(logits: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Row log-softmax; columns outside ``mask`` get -inf (they take no mass)."""
    z = np.asarray(logits, dtype=np.float64).copy()
    if mask is not None:
        z[:, ~mask] = -np.inf
    z -= z.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        log_probs: np.ndarray = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return log_probs


def merge_with_zero_shot(log_fewshot: np.ndarray, has_examples: np.ndarray, zero_shot_probs: np.ndarray | None) -> np.ndarray:
    """(B, N) probabilities: the few-shot posterior over classes with examples, the zero-shot one elsewhere.

    ``log_fewshot`` is a log-posterior over the classes in ``has_examples`` (-inf elsewhere).
    Classes without examples keep their zero-shot probability; those with examples share
    the zero-shot mass they hold together, split by the few-shot posterior. Without a
    zero-shot matrix every class must have examples.
    """
    p_fs: np.ndarray = np.exp(log_fewshot)
    if bool(has_examples.all()):
        return p_fs
    if zero_shot_probs is None:
        raise InputError(f"{int((~has_examples).sum())} class(es) have no examples: pass the zero-shot scores "
                         "so they keep their zero-shot probability")
    p0 = np.exp(log_posterior(zero_shot_probs))
    mass = p0[:, has_examples].sum(axis=1, keepdims=True)
    out: np.ndarray = p0.copy()
    out[:, has_examples] = mass * p_fs[:, has_examples]
    return out


def rescale_to(log_probs: np.ndarray, reference_scores: np.ndarray) -> np.ndarray:
    """Log-probabilities mapped affinely onto the [min, max] range of the zero-shot scores.

    One map for the whole matrix (not per row), so each row's ranking and the relative
    confidence between rows are kept, while the numbers live where the zero-shot method's
    scores live (thresholds and its probability function still make sense).
    """
    logp = np.maximum(np.asarray(log_probs, dtype=np.float64), math.log(PROBABILITY_FLOOR))
    ref = np.asarray(reference_scores, dtype=np.float64)
    lo, hi = float(logp.min()), float(logp.max())
    r_lo, r_hi = float(ref.min()), float(ref.max())
    if hi - lo < 1e-12 or r_hi - r_lo < 1e-12:
        return np.full(logp.shape, (r_lo + r_hi) / 2, dtype=np.float32)
    return (r_lo + (logp - lo) * ((r_hi - r_lo) / (hi - lo))).astype(np.float32)


def _class_sums(x: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    sums = np.zeros((n_classes, x.shape[1]), dtype=np.float64)
    np.add.at(sums, y, x.astype(np.float64))
    return sums, counts


def _not_fitted(obj: object) -> None:
    if not hasattr(obj, "has_examples_"):
        raise InputError(f"this {type(obj).__name__} is not fitted yet: call fit(embeddings, labels, n_classes) first")


# ------------------------------------------------------------------ few-shot models
class _FewShotModel:
    """Shared prediction path: logits over classes with examples, merged with the zero-shot posterior."""

    has_examples_: np.ndarray
    counts_: np.ndarray
    n_classes_: int

    def fit(self, embeddings: np.ndarray, labels: Sequence[int] | np.ndarray, n_classes: int) -> "_FewShotModel":
        raise NotImplementedError  # pragma: no cover - abstract

    def _logits(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def loo_logits(self) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        """(n, N) logits of each support row by the model fitted without it, and which rows that is defined for."""
        raise NotImplementedError

    def decision_function(self, embeddings: np.ndarray) -> np.ndarray:
        """(B, N) few-shot logits; classes without examples are -inf."""
        _not_fitted(self)
        x = l2_normalize(np.atleast_2d(np.asarray(embeddings, dtype=np.float32)))
        z = self._logits(x)
        z[:, ~self.has_examples_] = -np.inf
        return z

    def log_posterior(self, embeddings: np.ndarray) -> np.ndarray:
        """(B, N) few-shot log-posterior over the classes with examples (-inf elsewhere)."""
        return log_softmax(self.decision_function(embeddings), self.has_examples_)

    def predict_proba(self, embeddings: np.ndarray, zero_shot_probs: np.ndarray | None = None) -> np.ndarray:
        """(B, N) probabilities; classes without examples keep their zero-shot probability."""
        logp = self.log_posterior(embeddings)
        p0 = check_zero_shot(zero_shot_probs, len(logp), self.n_classes_, "zero-shot probabilities")
        return merge_with_zero_shot(logp, self.has_examples_, p0)

    def scores(self, embeddings: np.ndarray, zero_shot_probs: np.ndarray | None = None,
               zero_shot_scores: np.ndarray | None = None) -> np.ndarray:
        """(B, N) class scores: log-probabilities, rescaled to the zero-shot scores' range when they are given."""
        logp = np.log(np.maximum(self.predict_proba(embeddings, zero_shot_probs), PROBABILITY_FLOOR))
        if zero_shot_scores is None:
            log_probs: np.ndarray = logp.astype(np.float32)
            return log_probs
        ref = check_zero_shot(zero_shot_scores, len(logp), self.n_classes_, "zero-shot scores")
        assert ref is not None
        return rescale_to(logp, ref)

    def predict(self, embeddings: np.ndarray, zero_shot_probs: np.ndarray | None = None) -> np.ndarray:
        labels: np.ndarray = self.predict_proba(embeddings, zero_shot_probs).argmax(axis=1)
        return labels


class PrototypeClassifier(_FewShotModel):
    """Cosine to the mean of each class's unit support embeddings.

    Parameters
    ----------
    temperature : float
        Logit scale of the cosines (the posterior is ``softmax(temperature * cosine)``).
    """

    def __init__(self, temperature: float = DEFAULT_PROTOTYPE_TEMPERATURE):
        self.temperature = temperature

    def fit(self, embeddings: np.ndarray, labels: Sequence[int] | np.ndarray, n_classes: int) -> "PrototypeClassifier":
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature > 0):
            raise InputError(f"PrototypeClassifier: temperature must be a positive finite number, got {self.temperature!r}")
        x, y = check_support(embeddings, labels, n_classes)
        sums, counts = _class_sums(x, y, int(n_classes))
        self.n_classes_ = int(n_classes)
        self.counts_ = counts.astype(np.int64)
        self.has_examples_ = counts > 0
        self.prototypes_ = l2_normalize(sums.astype(np.float32))
        self._x, self._y, self._sums = x, y, sums
        return self

    def _logits(self, x: np.ndarray) -> np.ndarray:
        return np.float64(self.temperature) * (x.astype(np.float64) @ self.prototypes_.T.astype(np.float64))

    def loo_logits(self) -> tuple[np.ndarray, np.ndarray]:
        _not_fitted(self)
        x, y = self._x.astype(np.float64), self._y
        z = x @ self.prototypes_.T.astype(np.float64)
        own = self._sums[y] - x  # each row's class sum without the row itself
        norms = np.linalg.norm(own, axis=1)
        defined = self.counts_[y] > 1
        z[np.arange(len(x)), y] = np.where(defined, np.einsum("ij,ij->i", x, own) / np.maximum(norms, 1e-12), -np.inf)
        z *= self.temperature
        z[:, ~self.has_examples_] = -np.inf
        return z, defined


class GaussianDiscriminant(_FewShotModel):
    """Linear discriminant: class means, one covariance shared by all classes, shrunk to a scaled identity.

    ``Σ = (1 - shrinkage) S + shrinkage (tr S / D) I`` with ``S`` the pooled within-class
    covariance; with one example per class there is no within-class spread, and the
    identity alone is used (nearest class mean). Logits are
    ``x' P μ_c - ½ μ_c' P μ_c`` with ``P = Σ⁻¹`` (equal class priors).

    Parameters
    ----------
    shrinkage : float in (0, 1]
        Share of the identity in the covariance: small D-dimensional support sets give a
        singular ``S``; 1 is the nearest-mean classifier.
    """

    def __init__(self, shrinkage: float = DEFAULT_SHRINKAGE):
        self.shrinkage = shrinkage

    def fit(self, embeddings: np.ndarray, labels: Sequence[int] | np.ndarray, n_classes: int) -> "GaussianDiscriminant":
        a = self.shrinkage
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not (0 < a <= 1):
            raise InputError(f"GaussianDiscriminant: shrinkage must be a number in (0, 1], got {a!r}")
        x, y = check_support(embeddings, labels, n_classes)
        sums, counts = _class_sums(x, y, int(n_classes))
        has = counts > 0
        means = sums / np.maximum(counts, 1)[:, None]
        x64 = x.astype(np.float64)
        centred = x64 - means[y]
        dof = len(x) - int(has.sum())
        d = x.shape[1]
        if dof > 0:
            within = centred.T @ centred / dof
            scale = float(np.trace(within)) / d
            cov = (1 - a) * within + a * scale * np.eye(d) if scale > 0 else np.eye(d)
        else:
            cov = np.eye(d)
        norm = max(float(np.trace(cov)) / d, 1e-12)
        cov /= norm  # unit average variance: logits on a stable scale
        # How much one row's scatter weighs in the covariance (for the leave-one-out downdate).
        self._scatter_weight = (1 - a) / (dof * norm) if dof > 0 and scale > 0 else 0.0
        self.precision_ = np.linalg.inv(cov)
        self.precision_ = (self.precision_ + self.precision_.T) / 2
        self.means_ = means
        self.n_classes_ = int(n_classes)
        self.counts_ = counts.astype(np.int64)
        self.has_examples_ = has
        self._x, self._y, self._sums = x64, y, sums
        return self

    def _logits(self, x: np.ndarray) -> np.ndarray:
        pm = self.means_ @ self.precision_  # (N, D)
        logits: np.ndarray = x.astype(np.float64) @ pm.T - 0.5 * np.einsum("nd,nd->n", pm, self.means_)[None, :]
        return logits

    def loo_logits(self) -> tuple[np.ndarray, np.ndarray]:
        """Each row scored by the model refitted without it: its class mean recomputed, and its
        share of the within-class scatter taken out of the covariance (a rank-one
        Sherman-Morrison downdate of the precision; the shrinkage target and the scale stay
        as fitted, which changes them by O(1/n)). Without the downdate a row's own
        deviation from its class would already be discounted, and leave-one-out would
        flatter the few-shot side."""
        _not_fitted(self)
        x, y, p = self._x, self._y, self.precision_
        n_own = self.counts_[y].astype(np.float64)
        defined = n_own > 1
        means = self.means_
        r = x - means[y]
        u = r @ p  # P r_i, one row per support row
        beta = self._scatter_weight * n_own / np.maximum(n_own - 1, 1)
        denominator = np.maximum(1 - beta * np.einsum("ij,ij->i", r, u), 1e-6)
        gamma = np.where(defined, beta / denominator, 0.0)
        xu = np.einsum("ij,ij->i", x, u)
        um = u @ means.T
        z = self._logits(x) + gamma[:, None] * (xu[:, None] * um - 0.5 * um**2)
        own = (self._sums[y] - x) / np.maximum(n_own - 1, 1)[:, None]
        p_own = own @ p
        um_own = np.einsum("ij,ij->i", u, own)
        value = (np.einsum("ij,ij->i", x, p_own) - 0.5 * np.einsum("ij,ij->i", own, p_own)
                 + gamma * (xu * um_own - 0.5 * um_own**2))
        z[np.arange(len(x)), y] = np.where(defined, value, -np.inf)
        z[:, ~self.has_examples_] = -np.inf
        return z, defined


FEWSHOT_MODELS: dict[str, type[_FewShotModel]] = {"prototype": PrototypeClassifier, "gda": GaussianDiscriminant}
"""Few-shot models a :class:`FusedClassifier` can combine with the zero-shot prior."""


# ---------------------------------------------------------------------- fusion
def _spread(log_probs: np.ndarray, mask: np.ndarray) -> float:
    """Mean per-row standard deviation of finite log-probabilities over the masked classes."""
    v = log_probs[:, mask]
    return float(np.mean(np.std(v, axis=1))) if v.size else 0.0


class FusedClassifier:
    """The system's zero-shot posterior as a prior, combined with a few-shot posterior.

    Over the classes with examples, ``log p ∝ (1 - w) log p0 + w κ log p_fs``: ``κ`` puts
    the few-shot log-posterior on the prior's spread (measured on the support rows), so
    ``w`` is a share, not a scale. ``w`` is chosen from ``weights`` by leave-one-out on
    the support set: each support row is scored with the few-shot model refitted
    without it (closed form) and its own zero-shot prior; the highest leave-one-out
    accuracy wins, ties going to the lower log-loss, then the smaller weight. Rows whose
    class has a single example cannot be left out; when no row can (one example per
    class), the few-shot side cannot be validated, and its weight is the prior's error
    rate on the examples (a prior that misclassifies its examples yields to them), or
    ``default_weight`` when set (``weight_source_`` says which). Classes without examples keep their
    zero-shot probability (:func:`merge_with_zero_shot`), and :meth:`scores` maps the
    result onto the zero-shot scores' range.

    Parameters
    ----------
    base : {"prototype", "gda"}
        The few-shot model.
    shrinkage, temperature : float
        Passed to the base model (GDA's shrinkage, the prototype's cosine scale).
    weights : tuple of float in [0, 1]
        Candidate mixing weights.
    default_weight : float in [0, 1] or None
        The weight when leave-one-out is impossible (one example per class); None: the
        zero-shot prior's error rate on the support set.
    """

    def __init__(self, base: str = "gda", *, shrinkage: float = DEFAULT_SHRINKAGE,
                 temperature: float = DEFAULT_PROTOTYPE_TEMPERATURE,
                 weights: Sequence[float] = DEFAULT_FUSION_WEIGHTS, default_weight: float | None = None):
        self.base = base
        self.shrinkage = shrinkage
        self.temperature = temperature
        self.weights = weights
        self.default_weight = default_weight

    def _model(self) -> _FewShotModel:
        if self.base == "prototype":
            return PrototypeClassifier(self.temperature)
        if self.base == "gda":
            return GaussianDiscriminant(self.shrinkage)
        raise InputError(f"FusedClassifier: unknown base {self.base!r}: choose one of {', '.join(FEWSHOT_MODELS)}")

    def _check_params(self) -> list[float]:
        grid = [float(w) for w in self.weights] if isinstance(self.weights, (list, tuple)) else []
        if not grid or not all(math.isfinite(w) and 0 <= w <= 1 for w in grid):
            raise InputError(f"FusedClassifier: weights must be a non-empty list of numbers in [0, 1], got {self.weights!r}")
        w0 = self.default_weight
        if w0 is not None and (isinstance(w0, bool) or not isinstance(w0, (int, float)) or not (0 <= w0 <= 1)):
            raise InputError(f"FusedClassifier: default_weight must be None or a number in [0, 1], got {w0!r}")
        return grid

    def fit(self, embeddings: np.ndarray, labels: Sequence[int] | np.ndarray,
            zero_shot_probs: np.ndarray) -> "FusedClassifier":
        """Fit on the support set: its embeddings, class indices and *its own* zero-shot probabilities.

        Only support data enters: the weight is chosen before any test input is seen.
        """
        grid = self._check_params()
        p0 = np.asarray(zero_shot_probs)
        if p0.ndim != 2:
            raise InputError(f"support zero-shot probabilities must be a (n, n_classes) matrix, got shape {p0.shape}")
        n_classes = p0.shape[1]
        model = self._model().fit(embeddings, labels, n_classes)
        checked = check_zero_shot(p0, len(np.atleast_2d(embeddings)), n_classes, "support zero-shot probabilities")
        assert checked is not None
        has = model.has_examples_
        y = np.asarray(labels, dtype=np.int64)
        l0 = log_posterior(checked)
        loo, defined = model.loo_logits()
        l_fs = log_softmax(loo, has)
        # The spread ratio uses every support row's full-model posterior (defined at any k).
        full_fs = model.log_posterior(embeddings)
        self.kappa_ = _spread(log_softmax(l0, has), has) / max(_spread(full_fs, has), 1e-12)
        self.model_ = model
        self.n_classes_ = n_classes
        self.has_examples_ = has
        self.n_loo_ = int(defined.sum())
        self.loo_accuracy_: dict[float, float] = {}
        self.loo_log_loss_: dict[float, float] = {}
        self.prior_support_accuracy_ = float(np.mean(l0.argmax(axis=1) == y))
        if self.n_loo_ == 0:
            if self.default_weight is None:
                self.weight_ = round(1.0 - self.prior_support_accuracy_, 4)
                self.weight_source_ = ("the prior's error rate on the examples (one example per class: "
                                       "leave-one-out impossible)")
            else:
                self.weight_ = float(self.default_weight)
                self.weight_source_ = "default_weight (one example per class: leave-one-out impossible)"
            return self
        rows = np.flatnonzero(defined)
        best: tuple[float, float, float] | None = None
        for w in grid:
            p = self._combine(l0[rows], l_fs[rows], w)
            truth = y[rows]
            acc = float(np.mean(p.argmax(axis=1) == truth))
            loss = float(-np.mean(np.log(np.maximum(p[np.arange(len(rows)), truth], PROBABILITY_FLOOR))))
            self.loo_accuracy_[w], self.loo_log_loss_[w] = acc, loss
            key = (-acc, loss, w)
            if best is None or key < best:
                best = key
        assert best is not None
        self.weight_ = best[2]
        self.weight_source_ = f"leave-one-out on {self.n_loo_} support row(s)"
        return self

    def _combine(self, l0: np.ndarray, l_fs: np.ndarray, weight: float) -> np.ndarray:
        has = self.has_examples_
        prior = log_softmax(l0, has)  # the prior restricted to the classes with examples
        fs = np.where(np.isfinite(l_fs), l_fs, -1e30) if weight > 0 else np.zeros_like(l_fs)
        mixed = (1 - weight) * np.where(np.isfinite(prior), prior, -1e30) + weight * self.kappa_ * fs
        return merge_with_zero_shot(log_softmax(mixed, has), has, np.exp(l0))

    def predict_proba(self, embeddings: np.ndarray, zero_shot_probs: np.ndarray) -> np.ndarray:
        """(B, N) fused probabilities for inputs with their zero-shot probabilities."""
        if not hasattr(self, "weight_"):
            raise InputError("this FusedClassifier is not fitted yet: call fit(support, labels, support_zero_shot) first")
        l_fs = self.model_.log_posterior(embeddings)
        p0 = check_zero_shot(zero_shot_probs, len(l_fs), self.n_classes_, "zero-shot probabilities")
        assert p0 is not None
        return self._combine(log_posterior(p0), l_fs, self.weight_)

    def scores(self, embeddings: np.ndarray, zero_shot_probs: np.ndarray, zero_shot_scores: np.ndarray) -> np.ndarray:
        """(B, N) fused log-probabilities mapped onto the zero-shot scores' range (:func:`rescale_to`)."""
        p = self.predict_proba(embeddings, zero_shot_probs)
        ref = check_zero_shot(zero_shot_scores, len(p), self.n_classes_, "zero-shot scores")
        assert ref is not None
        return rescale_to(np.log(np.maximum(p, PROBABILITY_FLOOR)), ref)

    def predict(self, embeddings: np.ndarray, zero_shot_probs: np.ndarray) -> np.ndarray:
        labels: np.ndarray = self.predict_proba(embeddings, zero_shot_probs).argmax(axis=1)
        return labels


__all__ = [
    "DEFAULT_FUSION_WEIGHTS",
    "DEFAULT_PROTOTYPE_TEMPERATURE",
    "DEFAULT_SHRINKAGE",
    "FEWSHOT_MODELS",
    "FusedClassifier",
    "GaussianDiscriminant",
    "PrototypeClassifier",
    "log_posterior",
    "merge_with_zero_shot",
    "rescale_to",
]
