"""Every figure cotembed reports, computed from embeddings without the model.

``evaluate`` (accuracy, calibration, confusions, question accuracy of several methods),
``curve`` (accuracy as questions are added), ``misclassified`` (the inputs a method gets
wrong, question by question) and ``objective`` (what the optimiser maximises). Rendering
these figures is :mod:`cotembed.reporting`'s job; nothing here draws or formats.
"""

from __future__ import annotations

from cotembed.evaluation.curve import CURVE_METHODS, accuracy_curve
from cotembed.evaluation.evaluate import EvalReport, MethodResult, SeededResult, evaluate
from cotembed.evaluation.misclassified import misclassified_examples
from cotembed.evaluation.objective import Objective, Score, split_rows

__all__ = ["CURVE_METHODS", "EvalReport", "MethodResult", "Objective", "Score", "SeededResult", "accuracy_curve",
           "evaluate", "misclassified_examples", "split_rows"]
