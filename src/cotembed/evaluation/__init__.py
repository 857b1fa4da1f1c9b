"""Every figure cotembed reports, computed from embeddings without the model.

``_evaluate`` (accuracy, calibration, confusions, question accuracy of several methods),
``_curve`` (accuracy as questions are added), ``_misclassified`` (the inputs a method gets
wrong, question by question) and ``_objective`` (what the optimiser maximises). Rendering
these figures is :mod:`cotembed.reporting`'s job; nothing here draws or formats.
"""

from __future__ import annotations

from cotembed.evaluation._curve import CURVE_METHODS, accuracy_curve
from cotembed.evaluation._evaluate import EvalReport, MethodResult, SeededResult, evaluate
from cotembed.evaluation._misclassified import misclassified_examples
from cotembed.evaluation._objective import Objective, Score, split_rows

__all__ = ["CURVE_METHODS", "EvalReport", "MethodResult", "Objective", "Score", "SeededResult", "accuracy_curve",
           "evaluate", "misclassified_examples", "split_rows"]
