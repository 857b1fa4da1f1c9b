"""Adaptive questioning with a model: fitting its answer model on collected data, explaining one input.

The policy and the method are pure numpy in :mod:`cotembed.scoring._adaptive` (re-exported
here); this module is the glue that needs a classifier (embedding data through the cache).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence

import numpy as np

from cotembed.scoring._adaptive import (
    BATCH_CALIBRATION_MIN_PER_CLASS,
    DEFAULT_CONFIDENCE,
    STOP_REASONS,
    Adaptive,
    AdaptiveSettings,
    AdaptiveStep,
    AdaptiveTrace,
    AnswerModel,
    PolicyRun,
    fit_answer_model,
    ideal_answers,
    run_policy,
    trace,
)

if TYPE_CHECKING:
    from cotembed._classifier import CoTClassifier
    from cotembed.data import Sample


def fit_answer_model_on(clf: "CoTClassifier", samples: Sequence["Sample"], use_labels: bool = True) -> AnswerModel:
    """Fit the answer model of ``clf``'s system and model on collected samples (embedded through the cache).

    Labelled samples are counted (unless ``use_labels`` is false); samples without
    labels are estimated by EM. Inputs that fail to load are left out (``n_failed``).
    """
    fitted = clf.calibrated(samples, ("adaptive",), use_labels=use_labels)
    model: AnswerModel = fitted.config.method("adaptive").params["answer_model"]
    return dataclasses.replace(model, n_failed=fitted.calibration_failures)


def explain_adaptive(clf: "CoTClassifier", embedding: np.ndarray) -> AdaptiveTrace:
    """The trace of ``clf``'s system and adaptive settings for one input embedding."""
    scorer = clf.scorer_for(("adaptive",))
    batch = scorer.batch(np.atleast_2d(embedding), ("adaptive",))
    detail: AdaptiveTrace = scorer.method("adaptive").explain(batch, [g.options for g in clf.system.groups])
    return detail


__all__ = [
    "BATCH_CALIBRATION_MIN_PER_CLASS",
    "DEFAULT_CONFIDENCE",
    "STOP_REASONS",
    "Adaptive",
    "AdaptiveSettings",
    "AdaptiveStep",
    "AdaptiveTrace",
    "AnswerModel",
    "PolicyRun",
    "explain_adaptive",
    "fit_answer_model",
    "fit_answer_model_on",
    "ideal_answers",
    "run_policy",
    "trace",
]
