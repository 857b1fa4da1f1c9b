"""cotembed: chain-of-thought classification with frozen embedding models.

Instead of matching an input against class names once (N text prompts), ask the
model many small attribute questions (Q prompts) and combine the answers with a
rules table. The model never changes; the knowledge lives in the system file.
"""

from __future__ import annotations

__version__ = "0.1.0"

from cotembed.cache import EmbeddingCache, NoCache, open_cache
from cotembed.classifier import CoTClassifier, Explanation, Prediction
from cotembed.embeddings import EmbeddingSet, PromptBank
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
from cotembed.evaluation.evaluate import EvalReport, evaluate
from cotembed.scoring import METHODS, Scorer, ScoringConfig, ScoringMethod, get_method
from cotembed.system import Group, System

__all__ = [
    "CoTClassifier",
    "CotembedError",
    "EmbeddingCache",
    "EmbeddingSet",
    "Encoder",
    "EvalReport",
    "Explanation",
    "Group",
    "InputError",
    "METHODS",
    "MissingDependencyError",
    "ModelLoadError",
    "NoCache",
    "Prediction",
    "PromptBank",
    "Scorer",
    "ScoringConfig",
    "ScoringMethod",
    "System",
    "SystemValidationError",
    "UnknownLabelError",
    "UnknownModelError",
    "evaluate",
    "get_method",
    "load_encoder",
    "open_cache",
]
