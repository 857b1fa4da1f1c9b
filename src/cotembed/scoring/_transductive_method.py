"""``--transductive``: any method, its posterior refined on the unlabelled batch it classifies (numpy only).

:class:`Transductive` wraps a configured method and keeps its name, prompts and
parameters. It learns from the batch (the method protocol's ``transductive`` /
``prepare`` hooks, so every caller that holds a whole batch before scoring, as
``classify`` and ``eval`` do, fits it): the wrapped method's posterior on the batch is
refined by :class:`~cotembed.scoring._transductive.TransductiveRefiner`, and every
row is then scored by the refiner's last E-step with what it learnt frozen
(:meth:`~cotembed.scoring._transductive.TransductiveRefiner.transform`), so the scores
do not depend on chunking. The refined log-posterior is mapped onto the wrapped
method's score range by one affine map fixed on the batch. A seeded method (one run per
seed, as random-control) has each seed's run refined on its own, so evaluate's
per-seed results (mean ± spread) stay per-seed. A batch too small to refine
keeps the wrapped method's scores, with a note (``note``, and in :meth:`settings`).
No label is ever read.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from cotembed.scoring._fewshot import PROBABILITY_FLOOR
from cotembed.scoring._functions import softmax
from cotembed.scoring._methods import Batch, ScoringConfig, ScoringMethod
from cotembed.scoring._transductive import TransductiveRefiner

if TYPE_CHECKING:
    from cotembed.system import CompiledSystem

SETTINGS_KEY = "transductive"


class Transductive(ScoringMethod):
    """``inner`` with its posterior refined on the batch (see the module docstring)."""

    description = "the wrapped method's posterior refined on the unlabelled batch (EM on class prototypes)"

    def __init__(self, inner: ScoringMethod, refiner: TransductiveRefiner | None = None,
                 scale: float = 1.0, offset: float = 0.0, seed: int | None = None,
                 per_seed: Mapping[int, "Transductive"] | None = None) -> None:
        self.inner = inner
        self.params = inner.params
        self.refiner = refiner
        self.scale, self.offset = scale, offset
        self.seed = seed
        """The wrapped method's seeded run this one refines (None: its plain ``score``)."""
        self.per_seed = dict(per_seed or {})
        """Each seed's refined run, for seeded methods (filled by :meth:`prepare`)."""

    # The wrapper answers to the wrapped method's name, prompts and parameters.
    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property
    def needs(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.inner.needs

    @property
    def parameters(self) -> Any:  # type: ignore[override]
        return self.inner.parameters

    @property
    def option_prefix(self) -> str:  # type: ignore[override]
        return self.inner.option_prefix

    @property
    def uses_examples(self) -> bool:  # type: ignore[override]
        return self.inner.uses_examples

    def __repr__(self) -> str:
        return f"Transductive({self.inner!r})"

    def with_params(self, **changes: Any) -> "Transductive":
        return Transductive(self.inner.with_params(**changes))

    @property
    def refined(self) -> bool:
        return self.refiner is not None and bool(self.refiner.refined_)

    @property
    def note(self) -> str | None:
        """Why the batch was not refined (too small), or None."""
        return None if self.refiner is None else self.refiner.note_

    # ------------------------------------------------------------- scoring
    def prompt_sets(self, compiled: "CompiledSystem", config: ScoringConfig) -> dict[str, tuple[str, ...]]:
        return self.inner.prompt_sets(compiled, config)

    def _inner_scores(self, batch: Batch) -> np.ndarray:
        return self.inner.score(batch) if self.seed is None else self.inner.score_seed(batch, self.seed)

    def seeds(self) -> tuple[int, ...]:
        return self.inner.seeds()

    def score_seed(self, batch: Batch, seed: int) -> np.ndarray:
        """The run with ``seed`` refined on its own (before :meth:`prepare`: the wrapped method's run)."""
        run = self.per_seed.get(seed)
        return run.score(batch) if run is not None else self.inner.score_seed(batch, seed)

    def score(self, batch: Batch) -> np.ndarray:
        inner = self._inner_scores(batch)
        if not self.refined:
            return inner
        assert self.refiner is not None and batch.embeddings is not None
        p0 = self.inner.probabilities(inner, batch.config)
        logp = np.log(np.maximum(self.refiner.transform(batch.embeddings, p0), PROBABILITY_FLOOR))
        return np.asarray((self.scale * logp + self.offset).astype(np.float32))

    def probabilities(self, scores: np.ndarray, config: ScoringConfig) -> np.ndarray:
        if not self.refined:
            return self.inner.probabilities(scores, config)
        return softmax(scores.astype(np.float64) / self.scale, axis=1).astype(np.float32)

    def posterior(self, batch: Batch, scores: np.ndarray) -> np.ndarray:
        """The wrapped method's calibrated posterior where the batch was not refined; the refined one where it was."""
        if not self.refined:
            return self.inner.posterior(batch, scores)
        return self.probabilities(scores, batch.config)

    # ------------------------------------------------------------ fitting
    def fit(self, batches: Sequence[Batch], labels: np.ndarray | None = None) -> "Transductive":
        return Transductive(self.inner.fit(batches, labels))

    def fit_examples(self, batches: Sequence[Batch], labels: np.ndarray) -> "Transductive":
        return Transductive(self.inner.fit_examples(batches, labels))

    def transductive(self, n_inputs: int, compiled: "CompiledSystem") -> bool:
        return True  # a batch too small is still prepared: it gets the fallback and its note

    def prepare(self, batches: Sequence[Batch]) -> "Transductive":
        """The wrapped method (itself prepared on the batch, if it learns from one) refined on the batch."""
        if not batches:
            return self
        n_inputs = sum(len(b) for b in batches)
        inner = self.inner.prepare(batches) if self.inner.transductive(n_inputs, batches[0].compiled) else self.inner
        base = self._refined(inner, batches, None)
        if not inner.seeds():
            return base
        # Each seed's run refined on its own, on the plain run's score map (so probabilities() fits every seed).
        runs = {s: self._refined(inner, batches, s, (base.scale, base.offset)) for s in inner.seeds()}
        return Transductive(inner, base.refiner, base.scale, base.offset, None, runs)

    @staticmethod
    def _refined(inner: ScoringMethod, batches: Sequence[Batch], seed: int | None,
                 score_map: tuple[float, float] | None = None) -> "Transductive":
        """``inner``'s run (its plain one, or the one with ``seed``) refined on the batches."""
        scores = [inner.score(b) if seed is None else inner.score_seed(b, seed) for b in batches]
        s0 = np.concatenate(scores)
        p0 = np.concatenate([inner.probabilities(s, b.config) for s, b in zip(scores, batches)])
        x = np.concatenate([np.asarray(b.embeddings) for b in batches])
        refiner = TransductiveRefiner().fit(x, p0)
        if not refiner.refined_:
            return Transductive(inner, refiner, seed=seed)
        if score_map is not None:
            return Transductive(inner, refiner, *score_map, seed=seed)
        logp = np.log(np.maximum(refiner.predict_proba(), PROBABILITY_FLOOR))
        lo, hi, r_lo, r_hi = float(logp.min()), float(logp.max()), float(s0.min()), float(s0.max())
        if hi - lo < 1e-12 or r_hi - r_lo < 1e-12 or not math.isfinite(r_hi - r_lo):
            return Transductive(inner, refiner, seed=seed)
        scale = (r_hi - r_lo) / (hi - lo)
        return Transductive(inner, refiner, scale, r_lo - lo * scale, seed=seed)

    # ---------------------------------------------------------- reporting
    def settings(self, compiled: "CompiledSystem | None" = None) -> dict[str, Any]:
        out = dict(self.inner.settings(compiled))
        info: dict[str, Any] = {"on": True}
        if self.refiner is not None:
            info["refined"] = bool(self.refiner.refined_)
            if self.refiner.refined_:
                info.update(iterations=int(self.refiner.n_iter_), converged=bool(self.refiner.converged_))
            if self.note:
                info["note"] = self.note
        out[f"{self.inner.option_prefix or self.inner.name + '_'}{SETTINGS_KEY}"] = info
        return out

    def extra_stats(self, batch: Batch) -> dict[str, np.ndarray]:
        return self.inner.extra_stats(batch)

    def explain(self, batch: Batch, options: Sequence[Sequence[str]]) -> Any:
        return self.inner.explain(batch, options)


def settings_notes(settings: Mapping[str, Any]) -> list[str]:
    """The fallback notes in methods' settings (:meth:`Transductive.settings`), one per method."""
    suffix = "_" + SETTINGS_KEY
    return [f"--transductive ({key.removesuffix(suffix)}): {value['note']}" for key, value in settings.items()
            if key.endswith(suffix) and isinstance(value, dict) and value.get("note")]


__all__ = ["SETTINGS_KEY", "Transductive", "settings_notes"]
