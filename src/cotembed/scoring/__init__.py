"""Pure-numpy scoring: no torch, no encoders, no I/O.

``_functions`` holds the building blocks, ``_params`` the declared-parameter checks,
``_methods`` the registry of scoring methods (import strings: a method's module is
imported when it is first used), ``_zoo`` the methods CoT is compared with,
``_adaptive`` adaptive questioning, and ``_scorer`` the :class:`Scorer` that applies
them to any embeddings.
"""

from __future__ import annotations

from cotembed.scoring._functions import (
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
from cotembed.scoring._methods import (
    DEFAULT_EVAL_METHODS,
    METHODS,
    NAMES,
    OPTIONS,
    Batch,
    ScoringConfig,
    ScoringMethod,
    get_method,
    method_class,
    method_names,
    method_settings,
    parse_methods,
    register_method,
    registered_method,
)
from cotembed.scoring._params import Param, validate_params
from cotembed.scoring._scorer import SCORING_CHUNK, Scorer
from cotembed.scoring._zoo import DEFAULT_RANDOM_SEEDS, DEFAULT_TEMPLATES

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
    "Param",
    "Scorer",
    "ScoringConfig",
    "ScoringMethod",
    "cosine_similarity",
    "cot_scores",
    "get_method",
    "group_log_softmax",
    "group_softmax",
    "hybrid_scores",
    "l2_normalize",
    "method_class",
    "method_names",
    "method_settings",
    "parse_methods",
    "register_method",
    "registered_method",
    "softmax",
    "sum_normalize",
    "validate_params",
]
