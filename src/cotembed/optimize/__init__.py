"""Optimising a system against held-out accuracy, with the model frozen (the article's DSPy loop).

``_edits`` (frozen, replayable changes), ``vocabulary`` (candidate wordings),
``objective`` (accuracy on cached embeddings), ``_proposers`` (the registry of edit
sources, offline and LLM), ``_search`` (the seeded loop with a validation split, budget
and plateau stopping, and a JSONL history) and, with the ``dspy`` extra,
``dspy_program`` (the same optimisation as a DSPy program or a GEPA run).
"""

from __future__ import annotations

from cotembed.evaluation._objective import Objective, Score, split_rows
from cotembed.optimize._edits import EDITS, Edit, edit_from_dict
from cotembed.optimize._proposers import PROPOSERS, parse_proposers, proposer_names
from cotembed.optimize._search import HistoryWriter, Search, SearchResult, SearchSettings
from cotembed.optimize.vocabulary import Vocabulary

__all__ = [
    "EDITS",
    "Edit",
    "HistoryWriter",
    "Objective",
    "PROPOSERS",
    "Score",
    "Search",
    "SearchResult",
    "SearchSettings",
    "Vocabulary",
    "edit_from_dict",
    "parse_proposers",
    "proposer_names",
    "split_rows",
]
