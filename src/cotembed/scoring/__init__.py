"""Pure-numpy scoring: no torch, no encoders, no I/O.

``functions`` holds the building blocks, ``methods`` the registry of scoring
methods, ``zoo`` the methods CoT is compared with (registered on import), and
``scorer`` the :class:`Scorer` that applies them to any embeddings. The
adaptive-questioning method lives in :mod:`cotembed.adaptive` and is registered here.
"""

from __future__ import annotations

from importlib import import_module

from cotembed.scoring.functions import (
    DEFAULT_TEMPERATURE,
    cosine_similarity,
    cot_scores,
    group_log_softmax,
    group_softmax,
    hybrid_scores,
    l2_normalize,
    softmax,
    sum_normalize,
)
from cotembed.scoring.methods import (
    DEFAULT_EVAL_METHODS,
    METHODS,
    NAMES,
    OPTIONS,
    Batch,
    ScoringConfig,
    ScoringMethod,
    get_method,
    method_names,
    parse_methods,
    register,
)
from cotembed.scoring.scorer import SCORING_CHUNK, Scorer
from cotembed.scoring.zoo import DEFAULT_RANDOM_SEEDS, DEFAULT_TEMPLATES, SeededMethod  # registers the method zoo

# Registered last, after the zoo; cotembed.adaptive is numpy only and imports this package's modules.
import_module("cotembed.adaptive")

__all__ = [
    "DEFAULT_EVAL_METHODS",
    "DEFAULT_RANDOM_SEEDS",
    "DEFAULT_TEMPLATES",
    "DEFAULT_TEMPERATURE",
    "METHODS",
    "NAMES",
    "OPTIONS",
    "SCORING_CHUNK",
    "Batch",
    "Scorer",
    "ScoringConfig",
    "ScoringMethod",
    "SeededMethod",
    "cosine_similarity",
    "cot_scores",
    "get_method",
    "group_log_softmax",
    "group_softmax",
    "hybrid_scores",
    "l2_normalize",
    "method_names",
    "parse_methods",
    "register",
    "softmax",
    "sum_normalize",
]
