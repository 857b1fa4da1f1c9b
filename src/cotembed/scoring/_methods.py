"""The method registry: every way of turning similarities into class scores.

A method is a *configured object*: ``get_method("adaptive", confidence=0.9)``. Its
class declares which named sets of text prompts it needs (``options``: the system's
Q filled-in option prompts; ``names``: the N class-name prompts; or sets of its
own), its parameters (:class:`~cotembed.scoring._params.Param`: validated in one
place, and the source of CLI flags, the service's schema and report settings), how
it scores a batch of similarities, and how scores become probabilities. The
protocol also covers what some methods do besides scoring (seeded repeats, fitting
on calibration data or on the unlabelled batch itself, a method-specific
explanation), so no caller branches on a method's name or class.

The registry maps names to import strings (``"module:Class"``): nothing registers
itself by being imported, and a method's module is imported only when it is used.
Add one with :func:`register_method` (or, in tests, the scoped
:func:`registered_method`).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np

from cotembed.errors import InputError
from cotembed.scoring._functions import (
    cot_scores,
    group_log_softmax,
    group_softmax,
    hybrid_scores,
    softmax,
    sum_normalize,
)
from cotembed.scoring._params import Param, closest, validate_params

if TYPE_CHECKING:
    from cotembed.system import CompiledSystem

OPTIONS = "options"
"""Prompt set of the Q filled-in option prompts, in compiled order."""
NAMES = "names"
"""Prompt set of the N class-name prompts (the system's ``baseline_prompt`` filled with each class)."""

METHODS: dict[str, "str | type[ScoringMethod]"] = {
    "baseline": "cotembed.scoring._methods:Baseline",
    "cot": "cotembed.scoring._methods:ChainOfThought",
    "hybrid": "cotembed.scoring._methods:Hybrid",
    "ensemble": "cotembed.scoring._zoo:Ensemble",
    "dclip": "cotembed.scoring._zoo:ClassificationByDescription",
    "cot-log": "cotembed.scoring._zoo:ProductOfExperts",
    "random-control": "cotembed.scoring._zoo:RandomControl",
    "adaptive": "cotembed.scoring._adaptive:Adaptive",
    "prototype": "cotembed.scoring._fewshot_methods:Prototype",
    "gda": "cotembed.scoring._fewshot_methods:GaussianDiscriminantMethod",
    "fused": "cotembed.scoring._fewshot_methods:Fused",
}
"""Registered methods: name -> ``"module:Class"`` (imported on first use), or a class defined where
no import string reaches it (a test's local class)."""

DEFAULT_EVAL_METHODS = ("baseline", "cot", "hybrid")


# ------------------------------------------------------------------ registry
def _resolve(target: "str | type[ScoringMethod]") -> type["ScoringMethod"]:
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        cls = getattr(import_module(module), attr)
    else:
        cls = target
    if not (isinstance(cls, type) and issubclass(cls, ScoringMethod)):
        raise TypeError(f"{target} is not a ScoringMethod subclass")
    return cls


def register_method(name: str, target: "str | type[ScoringMethod]") -> None:
    """Add a method: ``target`` is ``"module:Class"`` (preferred: nothing is imported now) or the class."""
    if not isinstance(name, str) or not name or name in METHODS:
        raise ValueError(f"method name {name!r} is empty or already registered")
    if isinstance(target, type):
        if not issubclass(target, ScoringMethod):
            raise TypeError(f"{target.__name__} is not a ScoringMethod subclass")
        if "<locals>" not in target.__qualname__:
            target = f"{target.__module__}:{target.__qualname__}"
    if _resolve(target).name != name:
        raise ValueError(f"method {name!r}: the class's name is {_resolve(target).name!r}")
    METHODS[name] = target


@contextmanager
def registered_method(name: str, target: "str | type[ScoringMethod]") -> Iterator[None]:
    """:func:`register_method` for the duration of a ``with`` block (tests, experiments)."""
    register_method(name, target)
    try:
        yield
    finally:
        METHODS.pop(name, None)


def method_names() -> tuple[str, ...]:
    return tuple(METHODS)


def method_class(name: str) -> type["ScoringMethod"]:
    """The registered class, or an InputError listing the valid names."""
    if not isinstance(name, str) or name not in METHODS:
        raise InputError(f"unknown method {name!r}{closest(str(name), list(METHODS))}: choose one of {', '.join(METHODS)}")
    return _resolve(METHODS[name])


def get_method(name: str, **params: Any) -> "ScoringMethod":
    """The method ``name`` configured with ``params`` (validated against its declarations).

    Parameters
    ----------
    name : str
        A registered method: ``"baseline"``, ``"cot"``, ``"hybrid"``, ``"adaptive"``, ...
        (:func:`method_names` lists them).
    **params
        The method's declared parameters; a wrong type, a value out of range or an
        unknown name is an :class:`InputError` naming the accepted ones.

    Examples
    --------
    >>> from cotembed import get_method
    >>> get_method("adaptive", confidence=0.9)
    get_method('adaptive', confidence=0.9, calibrate_on_batch=True)
    """
    return method_class(name)(**params)


def option_keys() -> dict[str, tuple[str, "Param"]]:
    """Every registered method's option keys (as in ``ScoringConfig.method_options``): key -> (method, param)."""
    out: dict[str, tuple[str, Param]] = {}
    for name in METHODS:
        cls = method_class(name)
        for key, param in cls.option_keys().items():
            out[key] = (name, param)
    return out


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
        hints = "".join(closest(n, list(METHODS)) for n in unknown[:1])
        raise InputError(f"unknown {noun} {', '.join(map(repr, unknown))}{hints}: choose from {', '.join(METHODS)}")
    return names


# -------------------------------------------------------------------- config
@dataclass(frozen=True)
class ScoringConfig:
    """Everything besides the system and the embeddings that changes scores; recorded in outputs."""

    temperature: float
    hybrid_weight: float = 1.0
    method_options: Mapping[str, Any] = field(default_factory=dict)
    """Parameters of the methods, by option key (``templates``, ``random_seeds``, ``adaptive_confidence``, ...):
    each method takes the keys it declares; a key no registered method declares is an error."""
    probabilities: str = "calibrated"
    """How scores become probabilities (:data:`cotembed.scoring._posteriors.PROBABILITY_MODES`): ``calibrated``
    (each method's posterior; CoT's is the product-of-groups likelihood) or ``normalised`` (the scores
    rescaled to sum to 1, the first releases' output)."""

    def __post_init__(self) -> None:
        from cotembed.scoring._posteriors import PROBABILITY_MODES

        if self.probabilities not in PROBABILITY_MODES:
            raise InputError(f"probabilities {self.probabilities!r}: choose one of {', '.join(PROBABILITY_MODES)}")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature > 0):
            raise InputError(f"temperature must be a positive finite number, got {self.temperature!r}")
        if not (isinstance(self.hybrid_weight, (int, float)) and math.isfinite(self.hybrid_weight) and self.hybrid_weight >= 0):
            raise InputError(f"hybrid weight must be a finite number >= 0, got {self.hybrid_weight!r}")
        if self.method_options:
            known = option_keys()
            unknown = [k for k in self.method_options if k not in known]
            if unknown:
                hint = closest(str(unknown[0]), list(known))
                raise InputError(f"unknown method option(s) {', '.join(map(repr, unknown))}{hint}: "
                                 f"the options are {', '.join(known)}")

    def option(self, name: str, default: Any = None) -> Any:
        return self.method_options.get(name, default)

    @cached_property
    def _methods(self) -> dict[str, "ScoringMethod"]:
        return {}

    def method(self, name: str) -> "ScoringMethod":
        """Method ``name`` configured from ``method_options`` (one instance per config and name)."""
        if name not in self._methods:
            self._methods[name] = method_class(name).from_options(self.method_options)
        return self._methods[name]


# ------------------------------------------------------------------- batches
class Batch:
    """Similarities of one chunk of inputs to every prompt set some methods need.

    Derived arrays (per-group probabilities, their logs) are computed once per batch
    and shared by every method scored on it.
    """

    def __init__(self, similarities: Mapping[str, np.ndarray], compiled: "CompiledSystem", config: ScoringConfig,
                 prompt_vectors: Mapping[str, np.ndarray] | None = None, embeddings: np.ndarray | None = None):
        self.similarities = similarities
        # The unit input embeddings themselves, for methods that compare inputs with examples or each other.
        self.embeddings = embeddings
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

    @cached_property
    def group_log_masses(self) -> np.ndarray:
        """(B, G, N) log of the mass each group's answer puts on the options each class accepts
        (the parts of CoT's posterior and of the fit scores)."""
        from cotembed.scoring._calibration import GroupRules, group_log_masses

        return group_log_masses(self[OPTIONS], GroupRules.from_compiled(self.compiled), self.config.temperature)


# ------------------------------------------------------------------ protocol
class ScoringMethod:
    """Base of every registered method: a configured object (``__init__`` only checks and stores params).

    Subclasses set ``name``/``description``/``needs``, declare ``parameters`` and
    override ``score``; the other hooks have defaults that fit most methods.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = (OPTIONS,)
    """Named prompt sets the method reads (the standard ``options`` / ``names`` sets)."""
    parameters: ClassVar[tuple[Param, ...]] = ()
    """The method's declared parameters (see :mod:`cotembed.scoring._params`)."""
    option_prefix: ClassVar[str] = ""
    """Prefix of the parameters' keys in ``ScoringConfig.method_options`` and in reports."""
    title: ClassVar[str] = ""
    """Heading of the method's CLI flags (default: ``method NAME``)."""
    switch_help: ClassVar[str] = ""
    """Non-empty: the CLI offers ``--NAME`` as a shorthand for ``--method NAME`` (help text)."""
    compare_with: ClassVar[tuple[str, ...]] = ()
    """Methods ``eval --NAME`` (without ``--methods``) reports next to this one."""
    prompt_symbol: ClassVar[str | None] = None

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = validate_params(self.parameters, params, f"method {self.name}")

    def __repr__(self) -> str:
        given = ", ".join(f"{k}={v!r}" for k, v in self.params.items() if v is not None)
        return f"get_method({self.name!r}{', ' + given if given else ''})"

    def with_params(self, **changes: Any) -> "ScoringMethod":
        """A copy with some parameters changed (checked again)."""
        return type(self)(**{**self.params, **changes})

    @classmethod
    def option_keys(cls) -> dict[str, Param]:
        """The keys of this method's parameters in ``ScoringConfig.method_options``."""
        return {cls.option_prefix + p.name: p for p in cls.parameters}

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "ScoringMethod":
        """Configured from the keys of ``method_options`` this method declares (others are ignored)."""
        keys = cls.option_keys()
        return cls(**{p.name: options[k] for k, p in keys.items() if k in options and options[k] is not None})

    # ------------------------------------------------------------- scoring
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

    def posterior(self, batch: Batch, scores: np.ndarray) -> np.ndarray:
        """(B, N) calibrated class probabilities (rows sum to 1): what ``--probabilities calibrated`` reports.

        Default: :meth:`probabilities`, already a posterior for methods whose scores are
        logits (a softmax at the temperature). Methods whose scores are sums of
        probabilities override it with a likelihood (CoT: the product of the groups').
        """
        return self.probabilities(scores, batch.config)

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

    # ---------------------------------------------------- seeded repeats
    def seeds(self) -> tuple[int, ...]:
        """Seeds of a method run once per seed (evaluate keeps one result per seed); () for one run."""
        return ()

    def score_seed(self, batch: Batch, seed: int) -> np.ndarray:
        """(B, N) scores of the run with ``seed`` (only for methods with :meth:`seeds`)."""
        return self.score(batch)

    def posterior_seed(self, batch: Batch, seed: int) -> np.ndarray:
        """(B, N) calibrated probabilities of the run with ``seed`` (what :meth:`posterior` is for one run)."""
        return self.posterior(batch, self.score_seed(batch, seed))

    # ------------------------------------------------------------ fitting
    def fit(self, batches: Sequence[Batch], labels: np.ndarray | None = None) -> "ScoringMethod":
        """The method fitted on calibration data (labels: (B,) class indices, or None); default: self.

        Only what the method's own parameters can hold is learnt (adaptive: its answer
        model); the model and the system stay frozen.
        """
        return self

    def transductive(self, n_inputs: int, compiled: "CompiledSystem") -> bool:
        """Whether :meth:`prepare` learns from a batch of ``n_inputs`` unlabelled inputs (default: no)."""
        return False

    def prepare(self, batches: Sequence[Batch]) -> "ScoringMethod":
        """The method to score this very batch with, fitted on it without labels when
        :meth:`transductive` says so (default: self)."""
        return self

    # ------------------------------------------------- labelled examples
    uses_examples: ClassVar[bool] = False
    """The method is fitted on a labelled support set (few-shot examples) by :meth:`fit_examples`
    and cannot score before it is."""

    def fit_examples(self, batches: Sequence[Batch], labels: np.ndarray) -> "ScoringMethod":
        """The method fitted on labelled examples (``labels``: (n,) class indices, never the
        inputs being classified); default: self (a method that does not use examples)."""
        return self

    # ---------------------------------------------------------- reporting
    def settings(self, compiled: "CompiledSystem | None" = None) -> dict[str, Any]:
        """The parameters in force, by option key, as a report records them."""
        return {self.option_prefix + p.name: p.reported(self.params[p.name]) for p in self.parameters}

    def explain(self, batch: Batch, options: Sequence[Sequence[str]]) -> Any:
        """Method-specific detail of one input's result (an object with ``to_dict()``), or None."""
        return None


def method_settings(methods: Sequence[ScoringMethod], compiled: "CompiledSystem | None" = None) -> dict[str, Any]:
    """Settings in force that change these methods' scores (templates, seeds, ...), for reports.

    Give ``compiled`` so settings a system can carry (its ensemble templates) are
    reported as scored; without it they read as the run's options or defaults.
    """
    out: dict[str, Any] = {}
    for method in methods:
        out.update(method.settings(compiled))
    return out


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

    def posterior(self, batch: Batch, scores: np.ndarray) -> np.ndarray:
        """The product-of-groups likelihood the summed score approximates (temperature and weights: the system's)."""
        from cotembed.scoring._posteriors import product_log_posterior

        return np.asarray(np.exp(product_log_posterior(batch)))

    def terms(self, batch: Batch) -> dict[str, np.ndarray]:
        return per_group_terms(batch.option_probs, batch.compiled)


class Hybrid(ScoringMethod):
    name = "hybrid"
    description = "cot plus the class-name softmax as one more weighted question (Q + N prompts)"
    needs = (OPTIONS, NAMES)

    def score(self, batch: Batch) -> np.ndarray:
        cot = cot_scores(batch.option_probs, batch.compiled.rule_matrix)
        return hybrid_scores(cot, batch[NAMES], batch.config.temperature, batch.config.hybrid_weight)

    def posterior(self, batch: Batch, scores: np.ndarray) -> np.ndarray:
        """The product of the groups' likelihoods and the class-name softmax (raised to the hybrid weight)."""
        from cotembed.scoring._posteriors import product_log_posterior

        names = batch[NAMES].astype(np.float64) * batch.config.temperature
        names -= names.max(axis=1, keepdims=True)
        log_names = names - np.log(np.exp(names).sum(axis=1, keepdims=True))
        logits = product_log_posterior(batch) + batch.config.hybrid_weight * log_names
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return np.asarray(p / p.sum(axis=1, keepdims=True))

    def terms(self, batch: Batch) -> dict[str, np.ndarray]:
        config = batch.config
        name_term = np.float32(config.hybrid_weight) * softmax(batch[NAMES] * np.float32(config.temperature), axis=1)
        return {**per_group_terms(batch.option_probs, batch.compiled), "class name": name_term}


__all__ = [
    "DEFAULT_EVAL_METHODS",
    "METHODS",
    "NAMES",
    "OPTIONS",
    "Batch",
    "Baseline",
    "ChainOfThought",
    "Hybrid",
    "ScoringConfig",
    "ScoringMethod",
    "get_method",
    "method_class",
    "method_names",
    "method_settings",
    "option_keys",
    "parse_methods",
    "per_group_terms",
    "register_method",
    "registered_method",
]
