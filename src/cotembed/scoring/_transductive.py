"""Label-free refinement of a zero-shot posterior on a batch of inputs (transduction).

A batch of unlabelled inputs shows where each class's inputs actually lie in the
model's embedding space, which prompts only guess. :class:`TransductiveRefiner` fits a
Gaussian mixture to the batch, one component per class with one shared diagonal
covariance (in the spirit of TransCLIP, NeurIPS'24), by an EM-style loop:

1. **M-step.** Each class's mean is the posterior-weighted mean of the batch's
   embeddings (centred on the batch mean, so the direction all inputs share does not
   dominate); the shared per-dimension variance is the posterior-weighted within-class
   scatter, shrunk towards its average (``shrinkage``), so dimensions in which
   classes spread count less than those that separate them.
2. **E-step.** Each input's class posterior combines the mixture's log-likelihoods
   with the zero-shot posterior as a prior term (``anchor``): the refined posterior
   cannot drift far from what the system says, so one bad cluster does not relabel a
   class.
3. **Balance.** One Sinkhorn-style column step pulls the classes' total mass towards
   equal shares (``balance``: 0 none, 1 a full step), so one component cannot absorb
   the batch.

Both E-step terms are standardised (each divided by its spread over the batch) before
weighting, so the defaults carry over between models whose embeddings and methods whose
posteriors live on different scales. The loop is deterministic (no random start: the
means start from the zero-shot posterior) and stops when no probability moves by more
than ``tol``. A batch with fewer than ``min_per_class`` inputs per class on average
cannot tell classes apart: the zero-shot posterior is returned as it is, with a note
(``note_``).
"""

from __future__ import annotations

import math

import numpy as np

from cotembed.errors import InputError
from cotembed.scoring._fewshot import PROBABILITY_FLOOR, check_zero_shot, log_posterior, rescale_to
from cotembed.scoring._functions import l2_normalize

DEFAULT_ANCHOR = 0.25
"""Share of the zero-shot prior in the E-step (0: the mixture alone, 1: no refinement).
Chosen with ``sharpness`` and ``balance`` by bench_shots.py's sweep on critters hard with
system_paraphrased.yaml (mean gain over cot and hybrid), and checked there on the other tasks."""
DEFAULT_SHARPNESS = 2.0
"""Scale of the standardised logits in the E-step (higher: harder pseudo-labels)."""
DEFAULT_BALANCE = 1.0
"""Strength of the class-balance step."""
DEFAULT_SHRINKAGE = 0.5
"""Share of the average variance in each dimension's shared variance (1: spherical, cosine-like)."""
DEFAULT_MAX_ITER = 20
DEFAULT_TOL = 1e-3
"""Stop when no probability moves by more than this in one iteration (the loop contracts geometrically)."""
MIN_PER_CLASS = 2.0
"""Fewest inputs per class, on average, for a batch to be refined."""


def _centred(logits: np.ndarray) -> np.ndarray:
    return np.asarray(logits - logits.mean(axis=1, keepdims=True))


def _spread(logits: np.ndarray) -> float:
    """Spread of the row-centred logits over the whole batch."""
    return float(_centred(logits).std())


def _log_likelihoods(x: np.ndarray, means: np.ndarray, inverse_variance: np.ndarray) -> np.ndarray:
    """(B, N) Gaussian log-likelihoods up to a per-row constant: ``x' P μ_c - ½ μ_c' P μ_c``, P diagonal."""
    pm = (means * inverse_variance).astype(np.float32)
    ll: np.ndarray = (x @ pm.T).astype(np.float64) - 0.5 * np.einsum("nd,nd->n", pm.astype(np.float64), means)[None, :]
    return ll


def _standardised(logits: np.ndarray) -> np.ndarray:
    """Row-centred logits divided by their spread over the whole batch (scale-free)."""
    z = _centred(logits)
    spread = float(z.std())
    standardised: np.ndarray = z / spread if spread > 1e-12 else z * 0.0
    return standardised


class TransductiveRefiner:
    """EM refinement of a class-per-component Gaussian mixture on the batch, anchored to the zero-shot posterior.

    Parameters
    ----------
    anchor : float in [0, 1]
        Weight of the zero-shot prior against the prototype term.
    sharpness : float > 0
        Scale of the combined standardised logits.
    balance : float in [0, 1]
        Strength of the class-balance step per iteration.
    shrinkage : float in [0, 1]
        Share of the average variance in each dimension's shared variance.
    max_iter : int >= 1
        Most EM iterations.
    tol : float > 0
        Stop when the largest change of a probability falls below it.
    min_per_class : float >= 0
        Fewest inputs per class on average to refine at all.
    """

    def __init__(self, anchor: float = DEFAULT_ANCHOR, sharpness: float = DEFAULT_SHARPNESS,
                 balance: float = DEFAULT_BALANCE, max_iter: int = DEFAULT_MAX_ITER, tol: float = DEFAULT_TOL,
                 min_per_class: float = MIN_PER_CLASS, shrinkage: float = DEFAULT_SHRINKAGE):
        self.anchor = anchor
        self.sharpness = sharpness
        self.balance = balance
        self.shrinkage = shrinkage
        self.max_iter = max_iter
        self.tol = tol
        self.min_per_class = min_per_class

    def _check_params(self) -> None:
        problems = []
        for name, low, high in (("anchor", 0.0, 1.0), ("balance", 0.0, 1.0), ("shrinkage", 0.0, 1.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (low <= v <= high):
                problems.append(f"{name} must be a number in [{low:g}, {high:g}], got {v!r}")
        for name in ("sharpness", "tol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                problems.append(f"{name} must be a positive finite number, got {v!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int) or self.max_iter < 1:
            problems.append(f"max_iter must be a whole number >= 1, got {self.max_iter!r}")
        m = self.min_per_class
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not (math.isfinite(m) and m >= 0):
            problems.append(f"min_per_class must be a finite number >= 0, got {m!r}")
        if problems:
            raise InputError("TransductiveRefiner: " + "; ".join(problems))

    def fit(self, embeddings: np.ndarray, zero_shot_probs: np.ndarray) -> "TransductiveRefiner":
        """Refine on the batch (its embeddings and zero-shot probabilities); no label is read."""
        self._check_params()
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim != 2:
            raise InputError(f"batch embeddings must be a (B, D) matrix, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise InputError("batch embeddings contain NaN or infinite values")
        p0 = np.asarray(zero_shot_probs)
        if p0.ndim != 2:
            raise InputError(f"zero-shot probabilities must be a (B, N) matrix, got shape {p0.shape}")
        checked = check_zero_shot(p0, len(x), p0.shape[1], "zero-shot probabilities")
        assert checked is not None
        n_rows, n_classes = checked.shape
        l0 = log_posterior(checked)
        self.zero_shot_: np.ndarray = np.exp(l0)
        self.n_iter_ = 0
        self.converged_ = False
        self.note_: str | None = None
        if n_rows < self.min_per_class * n_classes or n_classes < 2:
            self.refined_ = False
            self.note_ = (f"batch too small to refine: {n_rows} input(s) for {n_classes} classes "
                          f"(needs {self.min_per_class:g} per class on average); zero-shot scores kept")
            self.posterior_: np.ndarray = self.zero_shot_
            return self
        self.refined_ = True
        centre = l2_normalize(x).astype(np.float64).mean(axis=0)
        xc = self._centred_rows(x, centre)  # the two products per iteration in float32: the loop's cost
        prior = _standardised(l0)
        q = self.zero_shot_
        target = 1.0 / n_classes
        self.prior_spread_ = _spread(l0)
        second_moment = np.einsum("nd,nd->d", xc, xc, dtype=np.float64) / n_rows
        for it in range(1, self.max_iter + 1):
            mass = np.maximum(q.sum(axis=0), PROBABILITY_FLOOR)
            means = (xc.T @ q.astype(np.float32)).T.astype(np.float64) / mass[:, None]
            variance = np.maximum(second_moment - np.einsum("n,nd->d", mass, means**2) / n_rows, 1e-12)
            variance = (1 - self.shrinkage) * variance + self.shrinkage * float(variance.mean())
            inverse_variance = 1.0 / variance
            likelihoods = _log_likelihoods(xc, means, inverse_variance)
            likelihood_spread = _spread(likelihoods)
            logits = self.sharpness * ((1 - self.anchor) * _standardised(likelihoods) + self.anchor * prior)
            logits -= logits.max(axis=1, keepdims=True)
            new = np.exp(logits)
            new /= new.sum(axis=1, keepdims=True)
            factor = np.ones(n_classes)
            if self.balance > 0:
                share = np.maximum(new.mean(axis=0), PROBABILITY_FLOOR)
                factor = (target / share) ** self.balance
                new *= factor
                new /= new.sum(axis=1, keepdims=True)
            change = float(np.abs(new - q).max())
            q = new
            self.n_iter_ = it
            if change < self.tol:
                self.converged_ = True
                break
        self.posterior_ = q
        # The last E-step's statistics: :meth:`transform` applies that very step to any rows.
        self.centre_, self.means_, self.inverse_variance_ = centre, means, inverse_variance
        self.likelihood_spread_, self.balance_factor_ = likelihood_spread, factor
        return self

    @staticmethod
    def _centred_rows(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Unit rows minus the batch's mean unit row, re-normalised (float32)."""
        centred = l2_normalize(x).astype(np.float64) - centre[None, :]
        norms = np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
        return np.asarray(centred / norms, dtype=np.float32)

    def transform(self, embeddings: np.ndarray, zero_shot_probs: np.ndarray) -> np.ndarray:
        """(R, N) refined posterior of any rows (the fitted batch's, in chunks, or new inputs).

        The last E-step with everything learnt from the batch frozen (its centre, the class
        means, the shared variances, the two spreads, the balance factors): on the fitted batch it gives :meth:`predict_proba`'s
        rows, whatever the chunking. After a fallback, the zero-shot posterior.
        """
        if not hasattr(self, "posterior_"):
            raise InputError("this TransductiveRefiner is not fitted yet: call fit(embeddings, zero_shot_probs) first")
        x = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        p0 = check_zero_shot(zero_shot_probs, len(x), self.zero_shot_.shape[1], "zero-shot probabilities")
        assert p0 is not None
        l0 = log_posterior(p0)
        if not self.refined_:
            return np.asarray(np.exp(l0))
        likelihoods = _log_likelihoods(self._centred_rows(x, self.centre_), self.means_, self.inverse_variance_)
        prior = _centred(l0) / self.prior_spread_ if self.prior_spread_ > 1e-12 else _centred(l0) * 0.0
        spread = self.likelihood_spread_
        ll = _centred(likelihoods) / spread if spread > 1e-12 else _centred(likelihoods) * 0.0
        logits = self.sharpness * ((1 - self.anchor) * ll + self.anchor * prior)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        p *= self.balance_factor_
        return np.asarray(p / p.sum(axis=1, keepdims=True))

    def predict_proba(self) -> np.ndarray:
        """(B, N) refined posterior of the batch given to :meth:`fit` (the zero-shot one after a fallback)."""
        if not hasattr(self, "posterior_"):
            raise InputError("this TransductiveRefiner is not fitted yet: call fit(embeddings, zero_shot_probs) first")
        return self.posterior_

    def scores(self, zero_shot_scores: np.ndarray) -> np.ndarray:
        """(B, N) refined log-posterior on the zero-shot scores' range; after a fallback, the zero-shot scores."""
        p = self.predict_proba()
        ref = check_zero_shot(zero_shot_scores, p.shape[0], p.shape[1], "zero-shot scores")
        assert ref is not None
        if not self.refined_:
            return ref.astype(np.float32)
        return rescale_to(np.log(np.maximum(p, PROBABILITY_FLOOR)), ref)


def refine(embeddings: np.ndarray, zero_shot_probs: np.ndarray, **params: float) -> np.ndarray:
    """The refined (B, N) posterior of one batch with the given (or default) parameters."""
    return TransductiveRefiner(**params).fit(embeddings, zero_shot_probs).predict_proba()  # type: ignore[arg-type]


__all__ = ["DEFAULT_ANCHOR", "DEFAULT_BALANCE", "DEFAULT_SHARPNESS", "DEFAULT_SHRINKAGE", "MIN_PER_CLASS", "TransductiveRefiner", "refine"]
