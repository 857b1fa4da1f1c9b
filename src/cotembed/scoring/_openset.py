"""Open set: an absolute "does anything here fit?" score per prediction, and thresholds on it.

Normalised probabilities cannot tell a familiar input from one no class describes:
softmax over classes hides how well the best class fits. CoT keeps that signal in
its raw score, so every prediction can carry a **rule support**:

    rule support(x) = max_n  sum_g w_g m_g(n) / sum_g w_g,

the share of the predicted class's rule mass the answers support (``m_g(n)`` is the
probability mass, within group g, of the options class n accepts). 1 means every
question's answer is one the class accepts; an input of an unknown kind answers
some question with an option its nearest class does not accept and scores lower.
:func:`log_rule_support` is the product-of-groups form (the weighted mean log
mass, ``cot-log``'s raw score over the total weight): it punishes one badly
supported group harder, and is the default (:data:`DEFAULT_FIT_SCORE`, the one the
service also uses). :func:`energy` sums it over every class (log-sum-exp): on the critters
calibration splits (6 of 28 species unknown, 5 seeds) it separates unknown inputs best
(mean AUROC 0.949; log rule support 0.941, rule support 0.912, the normalised top
probability 0.736); ``--fit-score energy`` chooses it.

The rest turns any such score (higher = more familiar) into decisions and figures:
a threshold for a target precision or coverage chosen on labelled data, AUROC and
the false-positive rate at 95 % true-positive rate for known vs unknown inputs, and
the accuracy/coverage curve. Pure numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from cotembed.errors import InputError
from cotembed.scoring._calibration import GroupRules, group_log_masses


def rule_support(similarities: np.ndarray, rules: GroupRules, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """(B,) rule support in [0, 1] and (B,) the class it belongs to (CoT's prediction)."""
    masses = np.exp(group_log_masses(similarities, rules, temperature))
    share = np.einsum("bgn,g->bn", masses, rules.weights) / rules.weights.sum()
    return share.max(axis=1), share.argmax(axis=1)


def log_rule_support(similarities: np.ndarray, rules: GroupRules, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """(B,) weighted mean log mass of the best class (<= 0) and (B,) that class (cot-log's prediction)."""
    share = np.einsum("bgn,g->bn", group_log_masses(similarities, rules, temperature), rules.weights) / rules.weights.sum()
    return share.max(axis=1), share.argmax(axis=1)


def support_energy(log_support: np.ndarray) -> np.ndarray:
    """(B,) ``log sum_n exp(s_n)`` of (B, N) per-class log rule supports ``s_n`` (<= log N).

    The best class's log rule support plus ``log(1 + sum_{n != top} exp(s_n - s_top))``:
    credit when several classes fit (an input between two near-twin classes is still
    familiar), none when only one partly does. On the critters calibration splits (6 of 28
    species unknown, 5 seeds) it separates unknown inputs better than log rule support
    (mean AUROC 0.949 against 0.941, hard 0.897 against 0.883); a temperature on ``s_n``
    (0.5 to 10) did not beat 1.
    """
    s = np.asarray(log_support, dtype=np.float64)
    top = s.max(axis=1)
    energy: np.ndarray = top + np.log(np.exp(s - top[:, None]).sum(axis=1))
    return energy


def energy(similarities: np.ndarray, rules: GroupRules, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """(B,) :func:`support_energy` and (B,) cot-log's prediction."""
    share = np.einsum("bgn,g->bn", group_log_masses(similarities, rules, temperature), rules.weights) / rules.weights.sum()
    return support_energy(share), share.argmax(axis=1)


FitScore = Callable[[np.ndarray, GroupRules, float], tuple[np.ndarray, np.ndarray]]
FIT_SCORES: dict[str, FitScore] = {"rule support": rule_support, "log rule support": log_rule_support, "energy": energy}
"""Absolute fit scores by name: (similarities, rules, temperature) -> (score, predicted class)."""
DEFAULT_FIT_SCORE = "log rule support"


def fit_score(name: str) -> FitScore:
    """The named fit score, or an InputError listing them."""
    try:
        return FIT_SCORES[name]
    except KeyError:
        raise InputError(f"unknown fit score {name!r}: choose one of {', '.join(FIT_SCORES)}") from None


def _scores(values: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(x).all():
        raise InputError(f"{what}: scores must be finite")
    return x


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """Probability that a known input scores above an unknown one (ties count half)."""
    k, u = _scores(known, "known"), _scores(unknown, "unknown")
    if not len(k) or not len(u):
        raise InputError("AUROC needs at least one known and one unknown input")
    both = np.concatenate([k, u])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both))
    sorted_vals = both[order]
    # average ranks over ties
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], len(both)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2
    return float((ranks[: len(k)].sum() - len(k) * (len(k) + 1) / 2) / (len(k) * len(u)))


def fpr_at_tpr(known: np.ndarray, unknown: np.ndarray, tpr: float = 0.95) -> float:
    """Share of unknown inputs accepted at the threshold that keeps ``tpr`` of the known ones."""
    k, u = _scores(known, "known"), _scores(unknown, "unknown")
    if not len(k) or not len(u) or not 0 < tpr <= 1:
        raise InputError("FPR at TPR needs known and unknown inputs and 0 < tpr <= 1")
    threshold = np.sort(k)[::-1][max(math.ceil(tpr * len(k)) - 1, 0)]
    return float((u >= threshold).mean())


@dataclass(frozen=True)
class Threshold:
    """A chosen threshold (accept when score >= value) and what it gave on the data it was chosen on."""

    value: float
    precision: float
    coverage: float
    target: str

    def accept(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) >= self.value


def _check_target(value: float, name: str) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= 1):
        raise InputError(f"{name} must be a finite number in (0, 1], got {value!r}")
    return float(value)


def accuracy_coverage(scores: np.ndarray, correct: np.ndarray) -> dict[str, np.ndarray]:
    """The curve: for each threshold (every distinct score, high to low), coverage and accuracy of the accepted."""
    s = _scores(scores, "scores")
    c = np.asarray(correct, dtype=bool).ravel()
    if len(s) != len(c) or not len(s):
        raise InputError("scores and correctness must be non-empty and the same length")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, hits = s[order], np.cumsum(c[order])
    last = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), len(s) - 1]  # end of each tie run
    accepted = last + 1
    return {"threshold": s_sorted[last], "coverage": accepted / len(s), "accuracy": hits[last] / accepted}


def threshold_for_precision(scores: np.ndarray, correct: np.ndarray, precision: float) -> Threshold:
    """The lowest threshold whose accepted inputs are right at least ``precision`` of the time.

    Maximises coverage under the precision target; when no threshold reaches it, the
    highest threshold (fewest accepted) is returned and its precision says so.
    """
    target = _check_target(precision, "target precision")
    curve = accuracy_coverage(scores, correct)
    ok = np.flatnonzero(curve["accuracy"] >= target)
    i = int(ok.max()) if len(ok) else 0
    return Threshold(float(curve["threshold"][i]), float(curve["accuracy"][i]), float(curve["coverage"][i]),
                     f"precision >= {target:g}")


def threshold_for_coverage(scores: np.ndarray, correct: np.ndarray, coverage: float) -> Threshold:
    """The highest threshold that still accepts at least ``coverage`` of the inputs."""
    target = _check_target(coverage, "target coverage")
    curve = accuracy_coverage(scores, correct)
    i = int(np.flatnonzero(curve["coverage"] >= target - 1e-12).min())
    return Threshold(float(curve["threshold"][i]), float(curve["accuracy"][i]), float(curve["coverage"][i]),
                     f"coverage >= {target:g}")


def held_out_classes(class_names: tuple[str, ...] | list[str], k: int, seed: int) -> list[str]:
    """``k`` classes drawn (seeded) to leave out of a system for an open-set evaluation."""
    if not 0 < k < len(class_names):
        raise InputError(f"open set: hold out between 1 and {len(class_names) - 1} classes, got {k}")
    picked = np.random.default_rng(seed).choice(len(class_names), size=k, replace=False)
    return sorted(class_names[i] for i in picked)


__all__ = ["DEFAULT_FIT_SCORE", "FIT_SCORES", "Threshold", "energy", "fit_score", "accuracy_coverage", "auroc", "fpr_at_tpr", "held_out_classes", "log_rule_support",
           "rule_support", "support_energy", "threshold_for_coverage", "threshold_for_precision"]
