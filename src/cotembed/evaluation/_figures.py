"""Figures a report shows beside :func:`~cotembed.evaluation._evaluate.evaluate`'s: the chance
level of each question, and which classes (and row shares) a confusion heatmap draws.

Computed here so that :mod:`cotembed.reporting` only renders numbers it is given.
"""

from __future__ import annotations

import numpy as np

from cotembed._embeddings import EmbeddingSet
from cotembed.system import CompiledSystem

HEATMAP_MAX_CLASSES = 60
"""Above this many classes a heatmap keeps the classes with the most confusions (rows and columns)."""
HEATMAP_FOCUS_CLASSES = 40


def question_chance(compiled: CompiledSystem, data: EmbeddingSet) -> dict[str, float | None]:
    """Per group: how often a uniformly random answer fits the true class's rule, weighted by
    how many inputs each class has in ``data`` (None when no input has a class of the system)."""
    support = np.bincount(data.label_indices(compiled.class_names), minlength=compiled.n_classes).astype(np.float64)
    accepted = compiled.rule_matrix > 0
    chance: dict[str, float | None] = {}
    for g, name in enumerate(compiled.group_names):
        block = accepted[compiled.offsets[g] : compiled.offsets[g + 1]]
        share = block.sum(axis=0) / block.shape[0]  # a random answer fits class n with this probability
        chance[name] = float(share @ support / support.sum()) if support.sum() else None
    return chance


def heatmap_classes(matrix: np.ndarray, limit: int = HEATMAP_MAX_CLASSES, focus: int = HEATMAP_FOCUS_CLASSES) -> np.ndarray:
    """Indices of the classes drawn: all of them up to ``limit``, else the ``focus`` most confused (in class order)."""
    n = len(matrix)
    if n <= limit:
        return np.arange(n)
    off = matrix.astype(np.float64).copy()
    np.fill_diagonal(off, 0)
    involvement = off.sum(axis=0) + off.sum(axis=1)
    return np.sort(np.argsort(-involvement, kind="stable")[:focus])


def row_shares(matrix: np.ndarray) -> np.ndarray:
    """Each cell as a share of its row (a true class's inputs); 0 in an empty row."""
    m = np.asarray(matrix, dtype=np.int64)
    rows = m.sum(axis=1, keepdims=True)
    return np.asarray(np.divide(m, rows, out=np.zeros(m.shape), where=rows > 0))


__all__ = ["HEATMAP_FOCUS_CLASSES", "HEATMAP_MAX_CLASSES", "heatmap_classes", "question_chance", "row_shares"]
