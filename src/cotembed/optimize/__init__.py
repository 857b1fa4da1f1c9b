"""Optimising a system against held-out accuracy, with the model frozen (the article's DSPy loop).

``edits`` (frozen, replayable changes), ``vocabulary`` (candidate wordings),
``objective`` (accuracy on cached embeddings), ``proposers`` (the registry of edit
sources, offline and LLM), ``search`` (the seeded loop with a validation split, budget
and plateau stopping, and a JSONL history) and, with the ``dspy`` extra,
``dspy_program`` (the same optimisation as a DSPy program or a GEPA run).
"""

from __future__ import annotations

from cotembed.evaluation.objective import Objective, Score, split_rows
from cotembed.optimize.edits import EDITS, Edit, edit_from_dict
from cotembed.optimize.proposers import PROPOSERS, parse_proposers, proposer_names
from cotembed.optimize.search import HistoryWriter, Search, SearchResult, SearchSettings
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
