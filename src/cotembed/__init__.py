"""cotembed: chain-of-thought classification with frozen embedding models.

Instead of matching an input against class names once (N text prompts), ask the
model many small attribute questions (Q prompts) and combine the answers with a
rules table. The model never changes; the knowledge lives in the system file.
"""

from __future__ import annotations

__version__ = "0.1.0"

from cotembed._classifier import CoTClassifier, Explanation, Prediction
from cotembed._embeddings import EmbeddingSet, PromptBank
from cotembed.cache import EmbeddingCache, open_cache
from cotembed.encoders import Encoder, load_encoder
from cotembed.errors import (
    CotembedError,
    InputError,
    MissingDependencyError,
    ModelLoadError,
    SystemValidationError,
    UnknownLabelError,
    UnknownModelError,
)
from cotembed.evaluation._evaluate import EvalReport, evaluate
from cotembed.scoring import Scorer, ScoringConfig, ScoringMethod, get_method, method_names, register_method
from cotembed.system import Group, System

# The public face, by task; everything else is reached through its subpackage
# (cotembed.scoring, cotembed.encoders, cotembed.reporting, ...).
__all__ = [
    # classify inputs
    "CoTClassifier",
    "Prediction",
    "Explanation",
    # classification systems
    "System",
    "Group",
    # models
    "load_encoder",
    "Encoder",
    # scoring and evaluation without a model call
    "Scorer",
    "ScoringConfig",
    "ScoringMethod",
    "get_method",
    "method_names",
    "register_method",
    "evaluate",
    "EvalReport",
    # embeddings and their cache
    "EmbeddingSet",
    "PromptBank",
    "EmbeddingCache",
    "open_cache",
    # errors
    "CotembedError",
    "InputError",
    "MissingDependencyError",
    "ModelLoadError",
    "SystemValidationError",
    "UnknownLabelError",
    "UnknownModelError",
]
