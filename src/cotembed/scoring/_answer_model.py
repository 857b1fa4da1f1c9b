"""The answer model of adaptive questioning: how each question answers for each class (pure numpy).

Training-free (``ideal``: a class always gets the answer its rule names), counted from
labelled inputs, or estimated without labels by expectation-maximisation (Dawid and
Skene's estimator of annotator confusion, with soft answers), started from the
posterior of all questions together. Used by :mod:`cotembed.scoring._adaptive` to choose
which question to ask next.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cotembed.errors import InputError

if TYPE_CHECKING:
    from cotembed.system import CompiledSystem

SMOOTHING = 1.0
"""Pseudo-inputs of the ideal answer distribution added to each fitted answer row."""

EM_ITERATIONS = 50
EM_TOLERANCE = 1e-6
"""EM stops after this many rounds, or when no answer probability moves more than this."""

TINY = float(np.finfo(np.float64).tiny)
"""Probabilities are floored here before a logarithm (log of an underflowed zero would be -inf)."""

# --------------------------------------------------------------- answer model
def _rule_keys(compiled: "CompiledSystem") -> list[np.ndarray]:
    """Per group, (N,) index of each class's accepted-option set among the group's distinct sets."""
    accepted = compiled.rule_matrix > 0
    keys = []
    for g in range(len(compiled.group_names)):
        block = accepted[compiled.offsets[g] : compiled.offsets[g + 1]].T  # (N, K)
        _, index = np.unique(block, axis=0, return_inverse=True)
        keys.append(np.asarray(index).reshape(-1))
    return keys


def ideal_answers(compiled: "CompiledSystem") -> np.ndarray:
    """(N, Q): each class answers one of its rule's options (uniformly when it accepts several)."""
    accepted = (compiled.rule_matrix > 0).T.astype(np.float64)  # (N, Q)
    starts = compiled.offsets[:-1]
    per_group = np.add.reduceat(accepted, starts, axis=1)  # (N, G)
    answers: np.ndarray = accepted / np.repeat(per_group, np.diff(compiled.offsets), axis=1)
    return answers


@dataclass(frozen=True, eq=False)
class AnswerModel:
    """For every class, the distribution of each question's answer: ``answers[c, q]``.

    Row c restricted to group g's columns sums to 1. Built by :meth:`ideal` or
    :func:`fit_answer_model`; checked against the system it is used with.
    """

    answers: np.ndarray
    class_names: tuple[str, ...]
    group_names: tuple[str, ...]
    offsets: tuple[int, ...]
    source: str = "ideal"
    """``ideal``, ``labelled``, ``unlabelled`` (EM on calibration data) or ``batch`` (EM on the classified inputs)."""
    n_inputs: int = 0
    iterations: int = 0
    """EM rounds run (``unlabelled`` only)."""
    n_failed: int = 0
    """Inputs of the fitting data that could not be used (unreadable files)."""

    @classmethod
    def ideal(cls, compiled: "CompiledSystem") -> "AnswerModel":
        return cls(ideal_answers(compiled), compiled.class_names, compiled.group_names, tuple(int(o) for o in compiled.offsets))

    def check(self, compiled: "CompiledSystem") -> None:
        """InputError unless the model was made for this system's classes, groups and options."""
        if (self.class_names, self.group_names) != (compiled.class_names, compiled.group_names) or tuple(
            int(o) for o in compiled.offsets
        ) != self.offsets:
            raise InputError(
                f"adaptive answer model was fitted for another system ({len(self.class_names)} classes, groups "
                f"{', '.join(self.group_names)}); fit it again for this one ({compiled.n_classes} classes, groups "
                f"{', '.join(compiled.group_names)})"
            )

    def reliability(self, compiled: "CompiledSystem") -> dict[str, float]:
        """Per group: expected probability, over classes, that the answer is one the class's rule accepts."""
        accepted = (compiled.rule_matrix > 0).T
        right = np.add.reduceat(np.where(accepted, self.answers, 0.0), compiled.offsets[:-1], axis=1)  # (N, G)
        return {g: float(v) for g, v in zip(self.group_names, right.mean(axis=0))}

    def summary(self, compiled: "CompiledSystem | None" = None) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source}
        if self.source != "ideal":
            out["n_inputs"] = self.n_inputs
            if self.n_failed:
                out["n_failed"] = self.n_failed
        if self.source in ("unlabelled", "batch"):
            out["iterations"] = self.iterations
        if compiled is not None and self.source != "ideal":
            out["reliability"] = {g: round(v, 4) for g, v in self.reliability(compiled).items()}
        return out


def _fit_rows(probs: np.ndarray, weights: np.ndarray, compiled: "CompiledSystem", keys: list[np.ndarray],
              smoothing: float) -> np.ndarray:
    """(N, Q) answer rows from soft class memberships ``weights`` (B, N) and answers ``probs`` (B, Q).

    Classes that accept the same options of a group share that group's row (their
    answers are the same question about the same thing), which pools their inputs.
    """
    ideal = ideal_answers(compiled)
    uniform_mix = 0.1
    out = np.empty_like(ideal)
    per_class = weights.T @ probs  # (N, Q) soft answer counts
    mass = weights.sum(axis=0)  # (N,)
    for g, key in enumerate(keys):
        cols = slice(int(compiled.offsets[g]), int(compiled.offsets[g + 1]))
        size = cols.stop - cols.start
        n_keys = int(key.max()) + 1
        counts = np.zeros((n_keys, size))
        np.add.at(counts, key, per_class[:, cols])
        totals = np.bincount(key, weights=mass, minlength=n_keys)
        prior = np.zeros((n_keys, size))
        prior[key] = ideal[:, cols]
        prior = (1 - uniform_mix) * prior + uniform_mix / size
        rows = (counts + smoothing * prior) / (totals + smoothing)[:, None]
        out[:, cols] = rows[key]
    return out


def _class_log_likelihood(log_probs: np.ndarray, compiled: "CompiledSystem") -> np.ndarray:
    """(B, N) cot-log over every group: sum_g w_g log sum_{o in rule} p_g(o)."""
    out = np.zeros((len(log_probs), compiled.n_classes))
    for g in range(len(compiled.group_names)):
        out += group_log_likelihood(log_probs, compiled, g)
    return out


def normalise_log(log_post: np.ndarray) -> np.ndarray:
    shifted = log_post - log_post.max(axis=1, keepdims=True)
    log_probs: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return log_probs


def fit_answer_model(option_probs: np.ndarray, compiled: "CompiledSystem", labels: np.ndarray | None = None,
                     smoothing: float = SMOOTHING, iterations: int = EM_ITERATIONS) -> AnswerModel:
    """How each question answers for each class, from (B, Q) per-group answer probabilities.

    With ``labels`` ((B,) class indices) the rows are counted; without, they are
    estimated by EM from the posterior of all questions together (no label read).
    """
    probs = np.asarray(option_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != compiled.n_prompts:
        raise InputError(f"adaptive: answers must be (inputs, {compiled.n_prompts}) option probabilities, got shape {probs.shape}")
    if not len(probs):
        raise InputError("adaptive: no inputs to fit the answer model on")
    if not np.isfinite(probs).all():
        raise InputError("adaptive: the answer probabilities contain NaN or infinity")
    if not (math.isfinite(smoothing) and smoothing > 0):
        raise InputError(f"adaptive: smoothing must be a positive finite number, got {smoothing!r}")
    keys = _rule_keys(compiled)
    def model(answers: np.ndarray, source: str, iterations: int = 0) -> AnswerModel:
        return AnswerModel(answers, compiled.class_names, compiled.group_names, tuple(int(o) for o in compiled.offsets),
                           source=source, n_inputs=len(probs), iterations=iterations)

    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(probs),) or not np.issubdtype(labels.dtype, np.integer):
            raise InputError(f"adaptive: labels must be {len(probs)} class indices, got shape {labels.shape} of {labels.dtype}")
        if len(labels) and (labels.min() < 0 or labels.max() >= compiled.n_classes):
            raise InputError(f"adaptive: labels must be class indices in [0, {compiled.n_classes}), got {labels.min()}..{labels.max()}")
        onehot = np.zeros((len(labels), compiled.n_classes))
        onehot[np.arange(len(labels)), labels] = 1.0
        return model(_fit_rows(probs, onehot, compiled, keys, smoothing), "labelled")
    log_probs = np.log(np.maximum(probs, TINY))
    membership = np.exp(normalise_log(_class_log_likelihood(log_probs, compiled)))
    answers = ideal_answers(compiled)
    rounds = 0
    while rounds < iterations:
        rounds += 1
        new = _fit_rows(probs, membership, compiled, keys, smoothing)
        moved = float(np.abs(new - answers).max())
        answers = new
        # E-step: the soft answer's likelihood under each class's answer rows.
        log_lik = np.zeros((len(probs), compiled.n_classes))
        for g in range(len(compiled.group_names)):
            cols = slice(int(compiled.offsets[g]), int(compiled.offsets[g + 1]))
            log_lik += np.log(np.maximum(probs[:, cols] @ answers[:, cols].T, TINY))
        membership = np.exp(normalise_log(log_lik))
        if moved < EM_TOLERANCE:
            break
    return model(answers, "unlabelled", rounds)


def group_log_likelihood(log_probs: np.ndarray, compiled: "CompiledSystem", g: int) -> np.ndarray:
    """(R, N) w_g * log sum_{o in rule(c, g)} p_g(o), stable for rules with several options."""
    cols = slice(int(compiled.offsets[g]), int(compiled.offsets[g + 1]))
    block = compiled.rule_matrix[cols]  # (K, N): the group weight where accepted
    lp = np.asarray(log_probs[:, cols], dtype=np.float64)
    top = lp.max(axis=1, keepdims=True)
    mass = np.exp(lp - top) @ (block > 0)
    weight = float(block.max())
    log_mass: np.ndarray = weight * (np.log(np.maximum(mass, TINY)) + top)
    return log_mass


__all__ = ["EM_ITERATIONS", "EM_TOLERANCE", "SMOOTHING", "TINY", "AnswerModel", "fit_answer_model", "group_log_likelihood", "ideal_answers",
           "normalise_log"]
