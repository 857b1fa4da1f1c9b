"""Scorer: a compiled system plus its prompt embeddings scores any batch of embeddings.

No model is needed: given the input embeddings (e.g. from the cache) and a way to
embed prompt texts (a :class:`cotembed._embeddings.PromptBank`, which only encodes
texts it has never seen), a new candidate system costs a few dictionary lookups
and two matrix products. Work is chunked so temporaries stay small for any batch.
"""

from __future__ import annotations

from functools import cached_property, partial
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from cotembed.errors import InputError
from cotembed.scoring._functions import _SUM_RANGE, _exact_block, _group_layout, _group_sums, l2_normalize
from cotembed.scoring._methods import OPTIONS, Batch, ChainOfThought, ScoringConfig, ScoringMethod, method_class
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
    """Scores embeddings for one system under one configuration, for the given methods.

    Model-free: it holds the prompts' embeddings, so scoring many inputs (or many
    candidate systems, through :meth:`build`) costs matrix products, not model calls.

    Parameters
    ----------
    system : System
        The classification system to score with.
    prompt_vectors : Mapping[str, numpy.ndarray]
        Embeddings of each prompt set the methods need (``"options"``, ``"classes"``, ...),
        one row per prompt in the compiled order; :meth:`build` computes them for you.
    config : ScoringConfig
        Temperature, hybrid weight and the methods' options.
    methods : sequence of str or ScoringMethod, default ("cot",)
        Registered method names or configured methods (``get_method("adaptive", confidence=0.9)``).

    Examples
    --------
    A toy two-dimensional "model" that embeds anything red as (1, 0), the rest as (0, 1):

    >>> import numpy as np
    >>> from cotembed import Scorer, ScoringConfig, System
    >>> system = System.from_dict({"groups": {"colour": {"prompt": "a {} bird", "options": ["red", "blue"]}},
    ...                            "rules": {"robin": {"colour": "red"}, "jay": {"colour": "blue"}}})
    >>> def embed(texts):
    ...     return np.array([[1.0, 0.0] if "red" in t or "robin" in t else [0.0, 1.0] for t in texts], dtype=np.float32)
    >>> scorer = Scorer.build(system, embed, ScoringConfig(temperature=100.0), methods=["baseline", "cot"])
    >>> scorer.scores(np.array([[0.9, 0.1]], dtype=np.float32), "cot").round(3)
    array([[1., 0.]], dtype=float32)
    """

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
        """Embed every prompt set the methods need through ``embed`` (e.g. ``PromptBank.embed``).

        Parameters
        ----------
        system : System
            The classification system to score with.
        embed : callable
            ``texts -> (len(texts), D) array``; ``PromptBank(encoder, cache).embed`` caches
            the prompts' embeddings between runs and candidate systems.
        config : ScoringConfig
            Temperature, hybrid weight and the methods' options.
        methods : sequence of str or ScoringMethod, default ("cot",)
            Registered method names or configured methods.
        """
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
        if _is_article_aggregation(scoring_method) and len(embeddings):
            return self._article_scores(np.asarray(embeddings, dtype=np.float32), out, chunk)
        for rows, batch in self.batches(embeddings, (method,), chunk):
            out[rows] = scoring_method.score(batch)
        return out

    def _article_scores(self, x: np.ndarray, out: np.ndarray, chunk: int) -> np.ndarray:
        """The article's aggregation at close to the cost of its two matrix products.

        The inputs are scaled by temperature / |x| (a pass over B x D, smaller than B x Q)
        so the first product yields the logits directly;
        the group softmax runs in place, in cache-sized row blocks of one reused (chunk, Q)
        buffer; the class scores go straight into ``out``. (Spreading chunks over Python
        threads with one BLAS thread each was measured slower on an idle machine: 1.5x
        the floor against 1.2x.)
        """
        self._score_chunks(x, out, [slice(start, min(start + chunk, len(x))) for start in range(0, len(x), chunk)])
        return out

    def _score_chunks(self, x: np.ndarray, out: np.ndarray, chunks: Sequence[slice]) -> None:
        """Fused cot scores of the rows ``chunks`` select, written into ``out`` (one worker's share)."""
        prompts_t = self._options_t
        rule_matrix = self._rule_matrix
        rows_max = max(rows.stop - rows.start for rows in chunks)
        buffer = np.empty((rows_max, prompts_t.shape[1]), dtype=np.float32)
        scaled = np.empty((rows_max, x.shape[1]), dtype=np.float32)
        softmax = _InPlaceGroupSoftmax(self.compiled.offsets)
        temperature = np.float32(self.config.temperature)
        for rows in chunks:
            block = x[rows]
            factor = np.einsum("ij,ij->i", block, block)
            np.sqrt(factor, out=factor)
            np.divide(temperature, np.maximum(factor, np.float32(1e-12)), out=factor)
            inputs = np.multiply(block, factor[:, None], out=scaled[: len(block)])
            logits = buffer[: len(block)]
            np.matmul(inputs, prompts_t, out=logits)
            softmax(logits, partial(_logits_of_rows, inputs, prompts_t))
            np.matmul(logits, rule_matrix, out=out[rows])

    @cached_property
    def _options_t(self) -> np.ndarray:
        return np.ascontiguousarray(self.prompt_vectors[OPTIONS].T, dtype=np.float32)

    @cached_property
    def _rule_matrix(self) -> np.ndarray:
        return np.ascontiguousarray(self.compiled.rule_matrix, dtype=np.float32)

    def probabilities(self, embeddings: np.ndarray, method: str = "cot", chunk: int = SCORING_CHUNK) -> np.ndarray:
        """(B, N) rows summing to 1, in ``class_names`` order (in the config's ``probabilities`` mode)."""
        from cotembed.scoring._posteriors import class_probabilities

        scoring_method = self.method(method)
        embeddings = np.atleast_2d(embeddings)
        out = np.empty((len(embeddings), self.compiled.n_classes), dtype=np.float64)
        for rows, batch in self.batches(embeddings, (method,), chunk):
            out[rows] = class_probabilities(scoring_method, batch, scoring_method.score(batch))
        return out

    def predict(self, embeddings: np.ndarray, method: str = "cot") -> list[str]:
        return [self.compiled.class_names[i] for i in self.scores(embeddings, method).argmax(axis=1)]

    def prompts_used(self, method: str) -> int:
        return self.method(method).prompts_used(self.compiled, self.config)


def _logits_of_rows(inputs: np.ndarray, prompts_t: np.ndarray, rows: np.ndarray) -> np.ndarray:
    result: np.ndarray = inputs[rows] @ prompts_t
    return result


class _InPlaceGroupSoftmax:
    """Group softmax of a (rows, Q) logits block in place, row block by row block.

    Three passes per cache-sized block: exponentials in place, group sums (BLAS, as
    :func:`~cotembed.scoring._functions.group_softmax` sums them, so both give the same
    bits), and a division by each group's sum. No per-group maximum is subtracted:
    softmax is shift-invariant, so this is exact unless a group's exponentials overflow
    or underflow, which its sum shows; those rows are recomputed from their logits
    (``recompute``) and normalised exactly, shifted by each group's maximum. When many
    rows need it (a very high temperature), later blocks are shifted by the row's
    maximum first.
    """

    ROWS = 64
    """Rows per block: a 64 x Q float32 block (256 KB at Q = 1,000) stays in L2 cache through the three passes."""

    def __init__(self, offsets: np.ndarray):
        self.starts, self.sizes, self.equal = _group_layout(offsets)
        self.ones = np.ones(int(self.sizes[0]), dtype=np.float32) if self.equal else None
        self.columns = None if self.equal else np.repeat(np.arange(len(self.sizes)), self.sizes)
        self.shift = False

    def __call__(self, logits: np.ndarray, recompute: Callable[[np.ndarray], np.ndarray]) -> None:
        low, high = _SUM_RANGE
        spread = None if self.columns is None else np.empty((min(self.ROWS, len(logits)), logits.shape[1]), dtype=np.float32)
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            for first in range(0, len(logits), self.ROWS):
                block = logits[first:first + self.ROWS]
                if self.shift:
                    block -= block.max(axis=1, keepdims=True)
                np.exp(block, out=block)
                sums = _group_sums(block, self.starts, self.sizes, self.ones)
                bad = None
                if not (sums.min() >= low and sums.max() <= high):  # also true for NaN
                    bad = np.flatnonzero(~((sums >= low) & (sums <= high)).all(axis=1))
                    self.shift = self.shift or len(bad) > len(block) // 8
                    sums[bad] = 1.0
                if self.columns is None:
                    view = block.reshape(len(block), len(self.sizes), -1)
                    np.divide(view, sums[:, :, None], out=view)
                else:
                    assert spread is not None
                    np.divide(block, np.take(sums, self.columns, axis=1, out=spread[: len(block)]), out=block)
                if bad is not None:
                    again = np.ascontiguousarray(recompute(first + bad), dtype=np.float32)
                    _exact_block(again, self.starts, self.sizes, self.equal, log=False)
                    block[bad] = again


def _is_article_aggregation(method: ScoringMethod) -> bool:
    """Whether ``method`` scores exactly as the built-in ``cot`` does (its class, unmodified),
    so the fused path may compute it; anything else goes through ``method.score``."""
    return type(method) is ChainOfThought and method.needs == (OPTIONS,)
