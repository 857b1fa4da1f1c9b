"""The few-shot methods ``prototype``, ``gda`` and ``fused``: scoring fed by labelled examples (numpy only).

Each is a registered method like ``cot``; what sets them apart is that they are fitted
on a labelled support set (:meth:`~cotembed.scoring._methods.ScoringMethod.fit_examples`,
with embeddings that came through the cache like every other input) before they can
score. The fitted models are :mod:`cotembed.scoring._fewshot`'s:

- ``prototype``: cosine to each class's mean example; ``gda``: the Gaussian discriminant.
  Their score is the log-probability (0 at best, negative).
- ``fused``: the system's zero-shot posterior (``prior``: cot, hybrid or baseline) as a
  prior combined with the few-shot posterior; the mixing weight is chosen by
  leave-one-out on the examples alone (never on the inputs being classified), unless
  ``weight`` fixes it. Its log-probabilities are mapped onto the prior's score range by
  one affine map fixed on the examples, so its scores read like the prior's and do not
  depend on how a batch is chunked.

Classes without examples keep their zero-shot probability under the prior; the classes
with examples share the zero-shot mass they hold together, split by the few-shot
posterior (:func:`~cotembed.scoring._fewshot.merge_with_zero_shot`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from cotembed.errors import InputError
from cotembed.scoring._fewshot import (
    DEFAULT_PROTOTYPE_TEMPERATURE,
    DEFAULT_SHRINKAGE,
    FEWSHOT_MODELS,
    PROBABILITY_FLOOR,
    FusedClassifier,
    GaussianDiscriminant,
    PrototypeClassifier,
)
from cotembed.scoring._functions import softmax
from cotembed.scoring._methods import Batch, ScoringConfig, ScoringMethod, get_method
from cotembed.scoring._params import Param

if TYPE_CHECKING:
    from cotembed.system import CompiledSystem

PRIORS = ("cot", "hybrid", "baseline")
"""Zero-shot methods that can serve as the prior (and score the classes without examples)."""
DEFAULT_PRIOR = "cot"
TITLE = "few-shot methods (prototype, gda, fused)"
NEEDS_EXAMPLES = ("method {name} needs labelled examples: give --examples DATA on the command line, examples=... "
                  "to CoTClassifier, or register examples with the system in the service")


@dataclass(frozen=True)
class FittedExamples:
    """What a few-shot method learnt from its labelled examples, and where they came from."""

    model: Any
    """The fitted :class:`~cotembed.scoring._fewshot.PrototypeClassifier`, ``GaussianDiscriminant`` or ``FusedClassifier``."""
    per_class: tuple[int, ...]
    """Examples per class, in the system's class order."""
    classes_without: tuple[str, ...]
    scale: float = 1.0
    """Scores are ``scale * log p + offset`` (fused: the prior's range on the examples; else 1, 0)."""
    offset: float = 0.0
    source: tuple[str, ...] = ()
    """Where the examples came from (files, folders, a registration), for reports."""
    model_key: str | None = None
    skipped: int = 0
    """Examples left out: labels that are no class (``--ignore-unknown``), inputs that failed to load."""

    @property
    def n_examples(self) -> int:
        return int(sum(self.per_class))

    def with_source(self, source: Sequence[str], model_key: str | None = None, skipped: int = 0) -> "FittedExamples":
        return replace(self, source=tuple(source), model_key=model_key, skipped=int(skipped))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": list(self.source), "examples": self.n_examples,
                               "classes_with_examples": sum(1 for n in self.per_class if n),
                               "min_per_class": int(min(self.per_class)), "max_per_class": int(max(self.per_class))}
        if self.classes_without:
            out["classes_without_examples"] = list(self.classes_without)
        if self.skipped:
            out["skipped"] = self.skipped
        if self.model_key:
            out["model"] = self.model_key
        if isinstance(self.model, FusedClassifier):
            out["weight"] = float(self.model.weight_)
            out["weight_source"] = self.model.weight_source_
        return out


def _choice(choices: Sequence[str]) -> Any:
    def problem(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"

    return problem


def _fitted_problem(value: Any) -> str | None:
    return None if isinstance(value, FittedExamples) else f"must be FittedExamples (see fit_examples), got {type(value).__name__}"


def _fitted_report(value: Any) -> Any:
    return None if value is None else value.summary()


PRIOR = Param("prior", "str", DEFAULT_PRIOR, check=_choice(PRIORS), flag="--prior", metavar="METHOD",
              help=f"the zero-shot method that scores classes without examples and is fused's prior: "
                   f"{', '.join(PRIORS)} (default: {DEFAULT_PRIOR})")
SHRINKAGE = Param("shrinkage", "float", DEFAULT_SHRINKAGE, low=0.0, high=1.0, low_open=True, flag="--shrinkage", metavar="A",
                  help=f"GDA: share of the scaled identity in the shared covariance, in (0, 1] (default: {DEFAULT_SHRINKAGE:g})")
EXAMPLES = Param("examples", "object", None, optional=True, check=_fitted_problem, report=_fitted_report,
                 help="the fitted support set (set by fitting on labelled examples)")


class _FewShot(ScoringMethod):
    """Shared path: the prior's prompt sets, fitting on examples, log-probability scores."""

    uses_examples: ClassVar[bool] = True
    title = TITLE
    prompt_symbol = "Q"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.prior = get_method(self.params["prior"])

    def prompt_sets(self, compiled: "CompiledSystem", config: ScoringConfig) -> dict[str, tuple[str, ...]]:
        return self.prior.prompt_sets(compiled, config)

    @property
    def fitted(self) -> FittedExamples:
        value = self.params["examples"]
        if value is None:
            raise InputError(NEEDS_EXAMPLES.format(name=self.name))
        return value  # type: ignore[no-any-return]

    def _prior_of(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, scores) of the zero-shot prior on the batch."""
        scores = self.prior.score(batch)
        return self.prior.probabilities(scores, batch.config), scores

    def _model(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit_model(self, x: np.ndarray, y: np.ndarray, n_classes: int, p0: np.ndarray, s0: np.ndarray) -> tuple[Any, float, float]:
        return self._model().fit(x, y, n_classes), 1.0, 0.0

    def fit_examples(self, batches: Sequence[Batch], labels: np.ndarray) -> "_FewShot":
        if not batches or labels is None:
            raise InputError(f"method {self.name}: no labelled examples to fit on")
        if any(b.embeddings is None for b in batches):
            raise InputError(f"method {self.name}: the batches carry no embeddings (build them with Scorer.batch)")
        compiled = batches[0].compiled
        x = np.concatenate([np.asarray(b.embeddings) for b in batches])
        y = np.asarray(labels, dtype=np.int64)
        if len(y) != len(x):
            raise InputError(f"method {self.name}: {len(x)} examples but {len(y)} labels")
        priors = [self._prior_of(b) for b in batches]
        p0 = np.concatenate([p for p, _ in priors])
        s0 = np.concatenate([s for _, s in priors])
        model, scale, offset = self._fit_model(x, y, compiled.n_classes, p0, s0)
        counts = np.bincount(y, minlength=compiled.n_classes)
        without = tuple(c for c, n in zip(compiled.class_names, counts) if n == 0)
        fitted = FittedExamples(model, tuple(int(n) for n in counts), without, scale, offset)
        return self.with_params(examples=fitted)  # type: ignore[return-value]

    def _log_probs(self, batch: Batch) -> np.ndarray:
        fitted = self.fitted
        if batch.embeddings is None:
            raise InputError(f"method {self.name}: the batch carries no embeddings (build it with Scorer.batch)")
        p0, _ = self._prior_of(batch)
        p = fitted.model.predict_proba(batch.embeddings, p0)
        return np.asarray(np.log(np.maximum(p, PROBABILITY_FLOOR)))

    def score(self, batch: Batch) -> np.ndarray:
        fitted = self.fitted
        return (fitted.scale * self._log_probs(batch) + fitted.offset).astype(np.float32)

    def probabilities(self, scores: np.ndarray, config: ScoringConfig) -> np.ndarray:
        """The posterior: scores are ``scale * log p + offset``."""
        scale = self.fitted.scale if self.params["examples"] is not None else 1.0
        return softmax(scores.astype(np.float64) / scale, axis=1).astype(np.float32)


class Prototype(_FewShot):
    name = "prototype"
    description = "few-shot: cosine to the mean of each class's labelled examples (needs examples; N prompts of the prior)"
    option_prefix = "prototype_"
    parameters: ClassVar[tuple[Param, ...]] = (
        PRIOR,
        Param("temperature", "float", DEFAULT_PROTOTYPE_TEMPERATURE, low=0.0, high=1e4, low_open=True,
              help=f"scale of the cosines in the prototype posterior (default: {DEFAULT_PROTOTYPE_TEMPERATURE:g})"),
        EXAMPLES,
    )

    def _model(self) -> PrototypeClassifier:
        return PrototypeClassifier(self.params["temperature"])


class GaussianDiscriminantMethod(_FewShot):
    name = "gda"
    description = "few-shot: Gaussian discriminant of the labelled examples (class means, one shrunk covariance; needs examples)"
    option_prefix = "gda_"
    parameters: ClassVar[tuple[Param, ...]] = (PRIOR, SHRINKAGE, EXAMPLES)

    def _model(self) -> GaussianDiscriminant:
        return GaussianDiscriminant(self.params["shrinkage"])


class Fused(_FewShot):
    name = "fused"
    description = ("the system's zero-shot posterior as a prior fused with a few-shot posterior, the weight chosen by "
                   "leave-one-out on the examples (needs examples)")
    option_prefix = "fused_"
    parameters: ClassVar[tuple[Param, ...]] = (
        PRIOR,
        Param("base", "str", "gda", check=_choice(tuple(FEWSHOT_MODELS)), flag="--fused-base", metavar="MODEL",
              help="fused: the few-shot side, gda or prototype (default: gda)"),
        SHRINKAGE,
        Param("weight", "float", None, optional=True, low=0.0, high=1.0, flag="--fusion-weight", metavar="W",
              help="fused: the few-shot posterior's weight in [0, 1] instead of the one leave-one-out on the examples "
                   "chooses (0: the prior alone, 1: the examples alone)"),
        EXAMPLES,
    )

    def _fit_model(self, x: np.ndarray, y: np.ndarray, n_classes: int, p0: np.ndarray, s0: np.ndarray) -> tuple[Any, float, float]:
        weight = self.params["weight"]
        fused = FusedClassifier(self.params["base"], shrinkage=self.params["shrinkage"],
                                **({} if weight is None else {"weights": (weight,), "default_weight": weight}))
        fused.fit(x, y, p0)
        # One affine map, fixed here on the examples, puts log-probabilities on the prior's score range.
        logp = np.log(np.maximum(fused.predict_proba(x, p0), PROBABILITY_FLOOR))
        lo, hi = float(logp.min()), float(logp.max())
        r_lo, r_hi = float(s0.min()), float(s0.max())
        if hi - lo < 1e-12 or r_hi - r_lo < 1e-12 or not (math.isfinite(r_lo) and math.isfinite(r_hi)):
            return fused, 1.0, 0.0
        scale = (r_hi - r_lo) / (hi - lo)
        return fused, scale, r_lo - lo * scale


__all__ = ["DEFAULT_PRIOR", "PRIORS", "FittedExamples", "Fused", "GaussianDiscriminantMethod", "Prototype"]
