"""What a prediction says besides its class: its probability and its absolute fit score.

**Probabilities.** Two modes, chosen by ``ScoringConfig.probabilities``
(``--probabilities`` on the command line, ``probabilities`` in a service request):

- ``calibrated`` (default): each method's posterior (:meth:`ScoringMethod.posterior`).
  For CoT it is the product-of-groups likelihood
  (:func:`cotembed.scoring._calibration.log_posterior`) at the system's temperature
  and group weights, the ones ``cotembed calibrate`` fits; without a fitted
  temperature, the model's own (the label-free default). Methods whose scores are
  logits keep their softmax.
- ``normalised``: the method's scores rescaled to sum to 1, the output of the first
  releases. Kept for comparison: a sure CoT answer over 28 classes reads about 0.25.

**Fit score.** Normalised probabilities cannot say that *nothing* fits: an input
of an unknown kind still gets a top class with a high share. Every prediction
therefore carries an absolute **fit score**, computed from the answers alone:

- ``log rule support`` (default, :data:`DEFAULT_FIT_SCORE`) of the predicted class n:
  ``sum_g w_g log m_g(n) / sum_g w_g``,
  the weighted mean log of the probability mass each question's answer puts on the
  options class n accepts; 0 when every answer is one the class accepts, lower as
  answers stray (one badly supported question weighs heavily);
- ``rule support``: ``sum_g w_g m_g(n) / sum_g w_g`` in [0, 1], the share of the
  class's rule mass the answers support;
- ``energy``: ``log sum_n exp(log rule support of n)`` over every class (<= log N), the
  best class's log rule support plus credit when other classes fit too
  (:func:`cotembed.scoring._openset.support_energy`); a property of the input, not of one class.

Thresholds on it (``--abstain``) are what abstention compares with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from cotembed.errors import InputError
from cotembed.scoring._calibration import GroupRules, log_posterior
from cotembed.scoring._openset import DEFAULT_FIT_SCORE, FIT_SCORES, support_energy

# _methods.py and _scorer.py call into this module, so it names their types without importing them
# (an import, even for annotations only, would close a cycle in the scoring package).
Batch = Any
ScoringMethod = Any
Scorer = Any

OPTIONS_SET = "options"


def _calibrated(method: "ScoringMethod", batch: "Batch", scores: np.ndarray) -> np.ndarray:
    return np.asarray(method.posterior(batch, scores))


def _normalised(method: "ScoringMethod", batch: "Batch", scores: np.ndarray) -> np.ndarray:
    return np.asarray(method.probabilities(scores, batch.config))


PROBABILITY_MODES: dict[str, Callable[["ScoringMethod", "Batch", np.ndarray], np.ndarray]] = {
    "calibrated": _calibrated,
    "normalised": _normalised,
}
"""How (B, N) scores of a method on a batch become probabilities, by mode name."""
SEEDED_MODES: dict[str, Callable[["ScoringMethod", "Batch", int, np.ndarray], np.ndarray]] = {
    "calibrated": lambda method, batch, seed, scores: method.posterior_seed(batch, seed),
    "normalised": lambda method, batch, seed, scores: method.probabilities(scores, batch.config),
}
"""The same for one run of a seeded method (``random-control``): its seed's own posterior."""


def seed_probabilities(method: "ScoringMethod", batch: "Batch", seed: int, scores: np.ndarray) -> np.ndarray:
    """(B, N) probabilities of the run with ``seed`` of a seeded method, in the batch config's mode."""
    return np.asarray(SEEDED_MODES[batch.config.probabilities](method, batch, seed, scores), dtype=np.float64)

DEFAULT_PROBABILITIES = "calibrated"


def class_probabilities(method: "ScoringMethod", batch: "Batch", scores: np.ndarray) -> np.ndarray:
    """(B, N) probabilities of ``method``'s ``scores`` on ``batch``, in the batch config's mode."""
    return np.asarray(PROBABILITY_MODES[batch.config.probabilities](method, batch, scores), dtype=np.float64)


def _weights(batch: "Batch") -> np.ndarray:
    return GroupRules.from_compiled(batch.compiled).weights


def product_log_posterior(batch: "Batch") -> np.ndarray:
    """(B, N) log of CoT's product-of-groups posterior on the batch's option similarities."""
    return log_posterior(batch.group_log_masses, _weights(batch))


def check_fit_score(name: str) -> str:
    """``name`` if it is a fit score (``-`` may stand for spaces: ``log-rule-support``), else an InputError."""
    canonical = str(name).replace("-", " ").replace("_", " ")
    if canonical not in FIT_SCORES:
        raise InputError(f"unknown fit score {name!r}: choose one of {', '.join(FIT_SCORES)}")
    return canonical


def class_fit_scores(batch: "Batch", name: str = DEFAULT_FIT_SCORE) -> np.ndarray:
    """(B, N) the fit score of every class (higher: the answers support the class's rule more)."""
    name = check_fit_score(name)
    if OPTIONS_SET not in batch.similarities:
        raise InputError("a fit score needs the system's option prompts (score with a method that asks its questions)")
    if name == "energy":
        raise InputError("energy is a fit score of the input, not of one class")
    weights = _weights(batch)
    log_m = batch.group_log_masses
    share = np.exp(log_m) if name == "rule support" else log_m
    return np.asarray(np.einsum("bgn,g->bn", share, weights) / weights.sum())


def fit_scores(batch: "Batch", predicted: np.ndarray, name: str = DEFAULT_FIT_SCORE,
               columns: Sequence[int] | None = None) -> np.ndarray:
    """(B,) the fit score of each input's predicted class (energy: of the input, over ``columns``, the classes
    a request allows, or every class)."""
    if check_fit_score(name) == "energy":
        supports = class_fit_scores(batch, "log rule support")
        return support_energy(supports if columns is None else supports[:, np.asarray(columns, dtype=np.intp)])
    per_class = class_fit_scores(batch, name)
    return per_class[np.arange(len(per_class)), np.asarray(predicted, dtype=np.intp)]


@dataclass(frozen=True)
class Scored:
    """One method's figures for a set of inputs, each row an input."""

    scores: np.ndarray
    """(B, N) raw class scores (the prediction is their argmax)."""
    probabilities: np.ndarray
    """(B, N) probabilities in the config's mode."""
    fit: np.ndarray | None
    """(B,) fit score of the predicted class; None when the scorer has no option prompts."""
    support: np.ndarray | None = None
    """(B, N) every class's rule support (multi-label), when asked for."""

    @property
    def predicted(self) -> np.ndarray:
        return np.asarray(self.scores.argmax(axis=1))


def score_embeddings(scorer: "Scorer", embeddings: np.ndarray, method: str, fit_score: str = DEFAULT_FIT_SCORE,
                     support: bool = False) -> Scored:
    """Scores, probabilities and fit scores of ``method`` for (B, D) embeddings, chunk by chunk.

    Fit scores need the system's option prompts: build the scorer with ``cot`` besides
    the method (``scorer_for((method, "cot"))``) for methods that do not ask the questions.
    """
    fit_score = check_fit_score(fit_score)
    scoring_method = scorer.method(method)
    embeddings = np.atleast_2d(embeddings)
    n, b = scorer.compiled.n_classes, len(embeddings)
    has_options = OPTIONS_SET in scorer.prompt_vectors
    scores, probs = np.empty((b, n), dtype=np.float32), np.empty((b, n))
    fit = np.empty(b) if has_options else None
    per_class = np.empty((b, n)) if support and has_options else None
    for rows, batch in scorer.batches(embeddings, scorer.methods):
        s = scoring_method.score(batch)
        scores[rows], probs[rows] = s, class_probabilities(scoring_method, batch, s)
        if fit is not None:
            fit[rows] = fit_scores(batch, s.argmax(axis=1), fit_score)
        if per_class is not None:
            per_class[rows] = class_fit_scores(batch, "rule support")
    if support and per_class is None:
        raise InputError("multi-label scores need the system's option prompts")
    return Scored(scores, probs, fit, per_class)


__all__ = ["Scored", "score_embeddings", "DEFAULT_FIT_SCORE", "DEFAULT_PROBABILITIES", "PROBABILITY_MODES", "check_fit_score", "class_fit_scores", "seed_probabilities",
           "class_probabilities", "fit_scores", "product_log_posterior"]
