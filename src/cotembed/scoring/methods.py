"""The method registry: every way of turning similarities into class scores.

A method is one object that declares which named sets of text prompts it needs
(``options``: the system's Q filled-in option prompts; ``names``: the N class-name
prompts; or sets of its own), how it scores a batch of similarities, and how it
turns scores into probabilities. Adding a method is one new entry in ``METHODS``:
the CLI's choices, ``evaluate`` and the classifier all read the registry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from cotembed.errors import InputError
from cotembed.scoring.functions import (
    cot_scores,
    group_log_softmax,
    group_softmax,
    hybrid_scores,
    softmax,
    sum_normalize,
)

if TYPE_CHECKING:
    from cotembed.system import CompiledSystem

OPTIONS = "options"
"""Prompt set of the Q filled-in option prompts, in compiled order."""
NAMES = "names"
"""Prompt set of the N class-name prompts (the system's ``baseline_prompt`` filled with each class)."""


@dataclass(frozen=True)
class ScoringConfig:
    """Everything besides the system and the embeddings that changes scores; recorded in outputs."""

    temperature: float
    hybrid_weight: float = 1.0
    method_options: Mapping[str, Any] = field(default_factory=dict)
    """Per-method settings (e.g. prompt-ensemble templates, random-control seeds)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature > 0):
            raise InputError(f"temperature must be a positive finite number, got {self.temperature!r}")
        if not (isinstance(self.hybrid_weight, (int, float)) and math.isfinite(self.hybrid_weight) and self.hybrid_weight >= 0):
            raise InputError(f"hybrid weight must be a finite number >= 0, got {self.hybrid_weight!r}")

    def option(self, name: str, default: Any = None) -> Any:
        return self.method_options.get(name, default)


class Batch:
    """Similarities of one chunk of inputs to every prompt set some methods need.

    Derived arrays (per-group probabilities, their logs) are computed once per batch
    and shared by every method scored on it.
    """

    def __init__(self, similarities: Mapping[str, np.ndarray], compiled: "CompiledSystem", config: ScoringConfig,
                 prompt_vectors: Mapping[str, np.ndarray] | None = None):
        self.similarities = similarities
        self.compiled = compiled
        self.config = config
        # Unit prompt embeddings by set, for methods that combine prompts before comparing (ensembling).
        self.prompt_vectors: Mapping[str, np.ndarray] = prompt_vectors or {}

    def __getitem__(self, prompt_set: str) -> np.ndarray:
        return self.similarities[prompt_set]

    def __len__(self) -> int:
        return len(next(iter(self.similarities.values()))) if self.similarities else 0

    @cached_property
    def option_probs(self) -> np.ndarray:
        """(B, Q) probability of each option within its group."""
        return group_softmax(self[OPTIONS], self.compiled.offsets, self.config.temperature)

    @cached_property
    def option_log_probs(self) -> np.ndarray:
        return group_log_softmax(self[OPTIONS], self.compiled.offsets, self.config.temperature)


class ScoringMethod:
    """Base of every registered method. Subclasses set ``name``/``description`` and override ``score``."""

    name: str = ""
    description: str = ""
    needs: tuple[str, ...] = (OPTIONS,)
    """Named prompt sets the method reads (the standard ``options`` / ``names`` sets)."""

    def prompt_sets(self, compiled: "CompiledSystem", config: ScoringConfig) -> dict[str, tuple[str, ...]]:
        """Texts to embed, by set name. Methods with prompt sets of their own override this."""
        standard = {OPTIONS: compiled.prompts, NAMES: compiled.baseline_prompts}
        return {name: tuple(standard[name]) for name in self.needs}

    def prompts_used(self, compiled: "CompiledSystem", config: ScoringConfig) -> int:
        """Text embeddings this method costs per system (N for baseline, Q for CoT, ...)."""
        return sum(len(texts) for texts in self.prompt_sets(compiled, config).values())

    def score(self, batch: Batch) -> np.ndarray:
        """(B, N) raw class scores; higher is better."""
        raise NotImplementedError

    def probabilities(self, scores: np.ndarray, config: ScoringConfig) -> np.ndarray:
        """(B, N) rows summing to 1. Default: scores are non-negative masses, rescale them."""
        return sum_normalize(scores)

    def terms(self, batch: Batch) -> dict[str, np.ndarray] | None:
        """Named (B, N) parts whose sum is the score (one per question, ...), for explanations.

        None when the score does not split into additive parts.
        """
        return None

    def extra_stats(self, batch: Batch) -> dict[str, np.ndarray]:
        """Per-input figures besides the scores, by name ((B,) arrays; evaluate reports their means).

        For methods whose cost varies per input (adaptive questioning: questions and
        prompts consulted). Default: none.
        """
        return {}


def per_group_terms(values: np.ndarray, compiled: "CompiledSystem") -> dict[str, np.ndarray]:
    """Per group: (B, N) sum over the group's options of ``values`` x the rule matrix (weights included)."""
    offsets = compiled.offsets
    return {
        name: values[:, offsets[g] : offsets[g + 1]] @ compiled.rule_matrix[offsets[g] : offsets[g + 1]]
        for g, name in enumerate(compiled.group_names)
    }


class Baseline(ScoringMethod):
    name = "baseline"
    description = "zero-shot: cosine to each class-name prompt (N prompts)"
    needs = (NAMES,)

    def score(self, batch: Batch) -> np.ndarray:
        return batch[NAMES]

    def probabilities(self, scores: np.ndarray, config: ScoringConfig) -> np.ndarray:
        return softmax(scores * np.float32(config.temperature), axis=1)


class ChainOfThought(ScoringMethod):
    name = "cot"
    description = "the article's aggregation: softmax within each group, then sum of the class's option probabilities (Q prompts)"
    needs = (OPTIONS,)

    def score(self, batch: Batch) -> np.ndarray:
        return cot_scores(batch.option_probs, batch.compiled.rule_matrix)

    def terms(self, batch: Batch) -> dict[str, np.ndarray]:
        return per_group_terms(batch.option_probs, batch.compiled)


class Hybrid(ScoringMethod):
    name = "hybrid"
    description = "cot plus the class-name softmax as one more weighted question (Q + N prompts)"
    needs = (OPTIONS, NAMES)

    def score(self, batch: Batch) -> np.ndarray:
        cot = cot_scores(batch.option_probs, batch.compiled.rule_matrix)
        return hybrid_scores(cot, batch[NAMES], batch.config.temperature, batch.config.hybrid_weight)

    def terms(self, batch: Batch) -> dict[str, np.ndarray]:
        config = batch.config
        name_term = np.float32(config.hybrid_weight) * softmax(batch[NAMES] * np.float32(config.temperature), axis=1)
        return {**per_group_terms(batch.option_probs, batch.compiled), "class name": name_term}


METHODS: dict[str, ScoringMethod] = {}


def register(method: ScoringMethod) -> ScoringMethod:
    """Add a method to the registry (its ``name`` must be new)."""
    if not method.name or method.name in METHODS:
        raise ValueError(f"method name {method.name!r} is empty or already registered")
    METHODS[method.name] = method
    return method


for _method in (Baseline(), ChainOfThought(), Hybrid()):
    register(_method)

DEFAULT_EVAL_METHODS = ("baseline", "cot", "hybrid")


def method_names() -> tuple[str, ...]:
    return tuple(METHODS)


def get_method(name: str) -> ScoringMethod:
    """The registered method, or an InputError listing the valid names."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}") from None


def parse_methods(text: str | None, default: tuple[str, ...] = DEFAULT_EVAL_METHODS) -> tuple[str, ...]:
    """``"baseline, cot"`` -> validated names in order, duplicates dropped; every unknown one named."""
    if text is None:
        return default
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise InputError(f"no methods given; choose from {', '.join(METHODS)}")
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        noun = "method" if len(unknown) == 1 else "methods"
        raise InputError(f"unknown {noun} {', '.join(map(repr, unknown))}: choose from {', '.join(METHODS)}")
    return names
