"""Evaluation figures of the probabilities and the decisions built on them.

Next to accuracy, ``eval`` can report: how well probabilities are calibrated (the
reliability diagram behind ECE), what abstaining on the fit score buys (accuracy
of the accepted inputs against their share: the accuracy/coverage curve), how
conformal sets cover the true class and how large they are, how well the fit score
tells inputs of classes left out of the system from the rest (open set: AUROC and
the false-positive rate at 95 % true-positive rate), and multi-label precision,
recall, F1 and mAP. Each function takes a classifier and embedded labelled data
and returns a JSON-ready section; rendering lives in :mod:`cotembed.reporting`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

import numpy as np

from cotembed.errors import InputError
from cotembed.scoring._calibration import reliability
from cotembed.scoring._conformal import coverage as set_coverage
from cotembed.scoring._conformal import mean_set_size
from cotembed.scoring._decisions import conformal_sets, multilabel_targets
from cotembed.scoring._multilabel import multilabel_report
from cotembed.scoring._openset import accuracy_coverage, auroc, fpr_at_tpr, held_out_classes
from cotembed.scoring._posteriors import Scored
from cotembed.system import System

if TYPE_CHECKING:
    from cotembed._embeddings import EmbeddingSet


class CoTClassifier(Protocol):
    """What these sections read of a :class:`cotembed._classifier.CoTClassifier` (named, not
    imported: evaluation sits below the classifier)."""

    compiled: Any
    config: Any
    decisions: Any
    system: Any

    def using(self, method: str) -> Any: ...

    def scored(self, embeddings: np.ndarray, support: bool | None = None) -> Any: ...

    def on_system(self, system: Any) -> Any: ...

CURVE_POINTS = 101
"""Points kept of an accuracy/coverage curve in JSON and figures (one per percent of coverage)."""


def scored_data(clf: "CoTClassifier", data: "EmbeddingSet", method: str) -> tuple[Scored, np.ndarray]:
    """``method``'s scores, probabilities and fit scores on labelled data, and its class indices."""
    scored = clf.using(method).scored(data.embeddings)
    return scored, data.label_indices(clf.compiled.class_names)


def thinned_curve(curve: dict[str, np.ndarray], points: int = CURVE_POINTS) -> dict[str, list[float]]:
    """The curve at (at most) ``points`` coverages, always keeping its ends."""
    n = len(curve["coverage"])
    keep = np.unique(np.linspace(0, n - 1, min(points, n)).round().astype(int))
    return {k: [float(v) for v in np.asarray(curve[k])[keep]] for k in ("threshold", "coverage", "accuracy")}


def coverage_curve(scored: Scored, labels: np.ndarray) -> dict[str, list[float]]:
    """Accuracy of the inputs accepted at each fit-score threshold against their share."""
    if scored.fit is None:
        raise InputError("an accuracy/coverage curve needs fit scores")
    return thinned_curve(accuracy_coverage(scored.fit, scored.predicted == labels))


def probability_figures(clf: "CoTClassifier", data: "EmbeddingSet", methods: Sequence[str]) -> dict[str, Any]:
    """Per method: reliability-diagram data and the accuracy/coverage curve (the report's figures)."""
    out: dict[str, Any] = {"probabilities": clf.config.probabilities, "fit_score": clf.decisions.fit_score,
                           "reliability": {}, "coverage": {}}
    for method in methods:
        scored, labels = scored_data(clf, data, method)
        out["reliability"][method] = reliability(scored.probabilities, labels).to_dict()
        if scored.fit is not None:
            out["coverage"][method] = coverage_curve(scored, labels)
    return out


def abstention_section(scored: Scored, labels: np.ndarray, clf: "CoTClassifier") -> dict[str, Any]:
    """What the abstention threshold in force gives on these labelled inputs."""
    abstention = clf.decisions.abstention
    if abstention is None or scored.fit is None:
        raise InputError("abstention figures need an abstention threshold and fit scores")
    accepted = ~abstention.abstains(scored.fit)
    correct = scored.predicted == labels
    return {**abstention.to_dict(), "n_inputs": len(labels), "abstained": int((~accepted).sum()),
            "coverage": float(accepted.mean()),
            "accuracy_accepted": float(correct[accepted].mean()) if accepted.any() else None,
            "accuracy_all": float(correct.mean())}


def conformal_section(scored: Scored, labels: np.ndarray, clf: "CoTClassifier") -> dict[str, Any]:
    """Empirical coverage and set sizes of the conformal sets in force on these labelled inputs."""
    conformal = clf.decisions.conformal
    if conformal is None:
        raise InputError("conformal figures need a fitted conformal predictor")
    sets = conformal_sets(conformal, scored.probabilities)
    sizes = sets.sum(axis=1)
    return {"alpha": conformal.alpha, "target_coverage": 1 - conformal.alpha, "score": conformal.score,
            "threshold": conformal.threshold, "n_calibration": conformal.n_calibration, "notes": list(conformal.notes),
            "n_inputs": len(labels), "coverage": set_coverage(sets, labels), "mean_set_size": mean_set_size(sets),
            "empty_sets": int((sizes == 0).sum()), "singletons": int((sizes == 1).sum()),
            "max_set_size": int(sizes.max()) if len(sizes) else 0,
            "set_size_counts": [int(c) for c in np.bincount(sizes.astype(np.int64), minlength=1)]}


def without_classes(system: System, names: Sequence[str]) -> System:
    """The system with the classes ``names`` removed (their rules dropped; groups and options kept)."""
    data = system.to_dict()
    dropped = set(names)
    data["rules"] = {c: rule for c, rule in data["rules"].items() if c not in dropped}
    return System.from_dict(data, source=f"{system.name or 'system'} without {len(dropped)} classes")


def open_set_section(clf: "CoTClassifier", data: "EmbeddingSet", method: str, k: int, seed: int) -> dict[str, Any]:
    """Hold ``k`` classes (seeded) out of the system and score every input with what is left:
    inputs of the held-out classes are the unknown ones. AUROC and FPR at 95 % TPR of the
    fit score (known high, unknown low) and the accuracy/coverage curve over all inputs
    (an unknown input is never right)."""
    held = held_out_classes(list(clf.compiled.class_names), k, seed)
    reduced = clf.on_system(without_classes(clf.system, held)).using(method)
    scored = reduced.scored(data.embeddings)
    assert scored.fit is not None
    truth = np.asarray(data.labels, dtype=object)
    known = ~np.isin(truth, held)
    if known.all() or not known.any():
        raise InputError(f"open set: the data needs inputs of both the kept and the {k} held-out classes")
    predicted = np.asarray(reduced.compiled.class_names, dtype=object)[scored.predicted]
    correct = known & (predicted == truth)
    return {"k": k, "seed": seed, "held_out": held, "fit_score": clf.decisions.fit_score,
            "n_known": int(known.sum()), "n_unknown": int((~known).sum()),
            "auroc": auroc(scored.fit[known], scored.fit[~known]),
            "fpr_at_95_tpr": fpr_at_tpr(scored.fit[known], scored.fit[~known], 0.95),
            "accuracy_known": float(correct[known].mean()),
            "curve": thinned_curve(accuracy_coverage(scored.fit, correct))}


def multilabel_section(clf: "CoTClassifier", data: "EmbeddingSet") -> dict[str, Any]:
    """Per-class precision/recall/F1/AP, micro F1 and mAP of the multi-label thresholds in force
    (labels name one class or several separated by ``;``)."""
    thresholds = clf.decisions.multilabel
    targets = multilabel_targets(data.labels, clf.compiled.class_names, clf.system.resolve_label)
    scored = clf.scored(data.embeddings, support=True)
    assert scored.support is not None
    if thresholds is None:
        report = multilabel_report(scored.support, targets, np.zeros_like(targets), clf.compiled.class_names)
        per_class: dict[str, dict[str, Any]] = report["per_class"]  # type: ignore[assignment]
        return {"map": report["map"], "per_class": {c: {"ap": v["ap"], "support": v["support"]} for c, v in per_class.items()},
                "note": "no threshold: give --threshold or --threshold-data for precision, recall and F1"}
    report = multilabel_report(scored.support, targets, thresholds.predict(scored.support), clf.compiled.class_names)
    for value, figures in zip(thresholds.values, report["per_class"].values()):  # type: ignore[attr-defined]
        figures["threshold"] = float(value)
    return {"per_class_thresholds": thresholds.per_class, **report}


def multilabel_rows(section: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per class of a :func:`multilabel_section` (``--output`` as CSV or JSON lines)."""
    keys = ("threshold", "support", "precision", "recall", "f1", "ap")
    return [{"class": name, **{k: figures.get(k) for k in keys}} for name, figures in section["per_class"].items()]


def json_ready(value: Any) -> Any:
    """``value`` with non-finite floats as None (strict JSON; e.g. the recall of a class with no positive)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


__all__ = ["CURVE_POINTS", "abstention_section", "conformal_section", "coverage_curve", "json_ready", "multilabel_rows",
           "multilabel_section", "open_set_section", "probability_figures", "scored_data", "thinned_curve", "without_classes"]
