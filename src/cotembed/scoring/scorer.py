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
from cotembed.scoring.methods import Batch, ScoringConfig, get_method
from cotembed.system import CompiledSystem, System

SCORING_CHUNK = 2048
"""Rows scored at once: large enough for BLAS, small enough to keep B x Q temporaries in cache."""

EmbedTexts = Callable[[Sequence[str]], np.ndarray]


class Scorer:
    """Scores embeddings for one system under one configuration, for the given methods."""

    def __init__(self, system: System, prompt_vectors: Mapping[str, np.ndarray], config: ScoringConfig, methods: Sequence[str] = ("cot",)):
        self.system = system
        self.compiled: CompiledSystem = system.compile()
        self.config = config
        self.methods = tuple(dict.fromkeys(methods))
        expected: dict[str, tuple[str, ...]] = {}
        for name in self.methods:
            expected.update(get_method(name).prompt_sets(self.compiled, config))
        missing = [s for s in expected if s not in prompt_vectors]
        if missing:
            raise InputError(f"prompt embeddings missing for set(s) {', '.join(missing)}")
        self.prompt_vectors = {s: l2_normalize(prompt_vectors[s]) for s in expected}
        for s, texts in expected.items():
            if len(self.prompt_vectors[s]) != len(texts):
                raise InputError(f"prompt set {s!r}: {len(self.prompt_vectors[s])} embeddings for {len(texts)} prompts")

    @classmethod
    def build(cls, system: System, embed: EmbedTexts, config: ScoringConfig, methods: Sequence[str] = ("cot",)) -> "Scorer":
        """Embed every prompt set the methods need through ``embed`` (e.g. ``PromptBank.embed``)."""
        compiled = system.compile()
        sets: dict[str, tuple[str, ...]] = {}
        for name in dict.fromkeys(methods):
            sets.update(get_method(name).prompt_sets(compiled, config))
        return cls(system, {s: embed(texts) for s, texts in sets.items()}, config, methods)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.compiled.class_names

    def _check(self, method: str) -> str:
        if method not in self.methods:
            get_method(method)  # unknown names: InputError listing the valid ones
            raise InputError(f"this scorer was built for {', '.join(self.methods)}, not {method!r}")
        return method

    def batch(self, embeddings: np.ndarray, methods: Sequence[str] | None = None) -> Batch:
        """Similarities of (already chunk-sized) embeddings to every prompt set ``methods`` need."""
        names = self.methods if methods is None else tuple(self._check(m) for m in methods)
        x = l2_normalize(np.atleast_2d(embeddings))
        needed: dict[str, None] = {}
        for name in names:
            needed.update(dict.fromkeys(get_method(name).prompt_sets(self.compiled, self.config)))
        return Batch({s: x @ self.prompt_vectors[s].T for s in needed}, self.compiled, self.config, self.prompt_vectors)

    def batches(self, embeddings: np.ndarray, methods: Sequence[str] | None = None, chunk: int = SCORING_CHUNK) -> Iterator[tuple[slice, Batch]]:
        embeddings = np.atleast_2d(embeddings)
        for start in range(0, len(embeddings), chunk):
            rows = slice(start, min(start + chunk, len(embeddings)))
            yield rows, self.batch(embeddings[rows], methods)

    def scores(self, embeddings: np.ndarray, method: str = "cot", chunk: int = SCORING_CHUNK) -> np.ndarray:
        """(B, N) raw class scores of one method."""
        scoring_method = get_method(self._check(method))
        embeddings = np.atleast_2d(embeddings)
        out = np.empty((len(embeddings), self.compiled.n_classes), dtype=np.float32)
        for rows, batch in self.batches(embeddings, (method,), chunk):
            out[rows] = scoring_method.score(batch)
        return out

    def probabilities(self, embeddings: np.ndarray, method: str = "cot", chunk: int = SCORING_CHUNK) -> np.ndarray:
        """(B, N) rows summing to 1, in ``class_names`` order."""
        return get_method(method).probabilities(self.scores(embeddings, method, chunk), self.config)

    def predict(self, embeddings: np.ndarray, method: str = "cot") -> list[str]:
        return [self.compiled.class_names[i] for i in self.scores(embeddings, method).argmax(axis=1)]

    def prompts_used(self, method: str) -> int:
        return get_method(method).prompts_used(self.compiled, self.config)
