"""Scorer: a compiled system plus its prompt embeddings scores any batch of embeddings.

No model is needed: given the input embeddings (e.g. from the cache) and a way to
embed prompt texts (a :class:`cotembed.embeddings.PromptBank`, which only encodes
texts it has never seen), a new candidate system costs a few dictionary lookups
and two matrix products. Work is chunked so temporaries stay small for any batch.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from cotembed.errors import InputError
from cotembed.scoring.functions import l2_normalize
from cotembed.scoring.methods import Batch, ScoringConfig, ScoringMethod, method_class
from cotembed.system import CompiledSystem, System

SCORING_CHUNK = 2048
"""Rows scored at once: large enough for BLAS, small enough to keep B x Q temporaries in cache."""

EmbedTexts = Callable[[Sequence[str]], np.ndarray]


def _configured(methods: Sequence["str | ScoringMethod"], config: ScoringConfig) -> dict[str, ScoringMethod]:
    out: dict[str, ScoringMethod] = {}
    for m in methods:
        method = config.method(m) if isinstance(m, str) else m
        out.setdefault(method.name, method)
    return out


class Scorer:
    """Scores embeddings for one system under one configuration, for the given methods."""

    def __init__(self, system: System, prompt_vectors: Mapping[str, np.ndarray], config: ScoringConfig,
                 methods: Sequence["str | ScoringMethod"] = ("cot",)):
        self.system = system
        self.compiled: CompiledSystem = system.compile()
        self.config = config
        self._methods = _configured(methods, config)
        self.methods = tuple(self._methods)
        expected: dict[str, tuple[str, ...]] = {}
        for method in self._methods.values():
            expected.update(method.prompt_sets(self.compiled, config))
        missing = [s for s in expected if s not in prompt_vectors]
        if missing:
            raise InputError(f"prompt embeddings missing for set(s) {', '.join(missing)}")
        self.prompt_vectors = {s: l2_normalize(prompt_vectors[s]) for s in expected}
        for s, texts in expected.items():
            if len(self.prompt_vectors[s]) != len(texts):
                raise InputError(f"prompt set {s!r}: {len(self.prompt_vectors[s])} embeddings for {len(texts)} prompts")

    @classmethod
    def build(cls, system: System, embed: EmbedTexts, config: ScoringConfig,
              methods: Sequence["str | ScoringMethod"] = ("cot",)) -> "Scorer":
        """Embed every prompt set the methods need through ``embed`` (e.g. ``PromptBank.embed``)."""
        compiled = system.compile()
        configured = _configured(methods, config)
        sets: dict[str, tuple[str, ...]] = {}
        for method in configured.values():
            sets.update(method.prompt_sets(compiled, config))
        return cls(system, {s: embed(texts) for s, texts in sets.items()}, config, list(configured.values()))

    def method(self, name: str) -> ScoringMethod:
        """The configured method object this scorer scores ``name`` with."""
        return self._methods[self._check(name)]

    def with_methods(self, methods: Sequence["str | ScoringMethod"]) -> "Scorer":
        """The same prompt vectors scored with other (e.g. fitted) method objects."""
        return Scorer(self.system, self.prompt_vectors, self.config, methods)

    def prepare(self, embeddings: np.ndarray, methods: Sequence[str] | None = None) -> "Scorer":
        """This scorer with each transductive method fitted on these (unlabelled) embeddings.

        Methods that learn nothing from the batch stay as they are; no label is read.
        """
        names = self.methods if methods is None else tuple(self._check(m) for m in methods)
        embeddings = np.atleast_2d(embeddings)
        learners = [n for n in names if self._methods[n].transductive(len(embeddings), self.compiled)]
        if not learners:
            return self
        batches = [batch for _, batch in self.batches(embeddings, tuple(learners))]
        fitted = {n: self._methods[n].prepare(batches) for n in learners}
        return self.with_methods([fitted.get(n, m) for n, m in self._methods.items()])

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.compiled.class_names

    def _check(self, method: str) -> str:
        if method not in self.methods:
            method_class(method)  # unknown names: InputError listing the valid ones
            raise InputError(f"this scorer was built for {', '.join(self.methods)}, not {method!r}")
        return method

    def batch(self, embeddings: np.ndarray, methods: Sequence[str] | None = None) -> Batch:
        """Similarities of (already chunk-sized) embeddings to every prompt set ``methods`` need."""
        names = self.methods if methods is None else tuple(self._check(m) for m in methods)
        x = l2_normalize(np.atleast_2d(embeddings))
        needed: dict[str, None] = {}
        for name in names:
            needed.update(dict.fromkeys(self._methods[name].prompt_sets(self.compiled, self.config)))
        return Batch({s: x @ self.prompt_vectors[s].T for s in needed}, self.compiled, self.config, self.prompt_vectors, x)

    def batches(self, embeddings: np.ndarray, methods: Sequence[str] | None = None, chunk: int = SCORING_CHUNK) -> Iterator[tuple[slice, Batch]]:
        embeddings = np.atleast_2d(embeddings)
        for start in range(0, len(embeddings), chunk):
            rows = slice(start, min(start + chunk, len(embeddings)))
            yield rows, self.batch(embeddings[rows], methods)

    def scores(self, embeddings: np.ndarray, method: str = "cot", chunk: int = SCORING_CHUNK) -> np.ndarray:
        """(B, N) raw class scores of one method."""
        scoring_method = self.method(method)
        embeddings = np.atleast_2d(embeddings)
        out = np.empty((len(embeddings), self.compiled.n_classes), dtype=np.float32)
        for rows, batch in self.batches(embeddings, (method,), chunk):
            out[rows] = scoring_method.score(batch)
        return out

    def probabilities(self, embeddings: np.ndarray, method: str = "cot", chunk: int = SCORING_CHUNK) -> np.ndarray:
        """(B, N) rows summing to 1, in ``class_names`` order."""
        return self.method(method).probabilities(self.scores(embeddings, method, chunk), self.config)

    def predict(self, embeddings: np.ndarray, method: str = "cot") -> list[str]:
        return [self.compiled.class_names[i] for i in self.scores(embeddings, method).argmax(axis=1)]

    def prompts_used(self, method: str) -> int:
        return self.method(method).prompts_used(self.compiled, self.config)
