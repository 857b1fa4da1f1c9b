"""Embeddings computed once per (model, content): prompts and labelled inputs.

:class:`PromptBank` turns prompt texts into vectors through an in-memory table and
the on-disk cache, and asks the model only for texts it has never seen: when a
system is edited, only its new prompts are encoded. :class:`EmbeddingSet` holds the
embeddings of a labelled data set (with labels, sources and the inputs that failed),
so any number of systems and methods can be scored on it without the model.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from cotembed._pipeline import SampleError, stream_embeddings
from cotembed.cache import EmbeddingStore, NoCache, text_key
from cotembed.data import Sample
from cotembed.encoders._base import Encoder
from cotembed.errors import InputError

if TYPE_CHECKING:
    from tqdm import tqdm
from cotembed.scoring._functions import l2_normalize

PROMPT_BATCH = 256
"""Texts per model call when embedding prompts."""


class PromptBank:
    """Prompt text -> unit vector for one model; only unseen texts reach the encoder.

    ``n_encoded`` counts texts the model really encoded, so callers (and tests) can
    verify that scoring an edited system cost only its new prompts.
    """

    def __init__(self, encoder: Encoder, cache: EmbeddingStore | None = None, progress: bool = False):
        self.encoder = encoder
        self.cache: EmbeddingStore = cache if cache is not None else NoCache()
        self.progress = progress
        self._vectors: dict[str, np.ndarray] = {}
        self.n_encoded = 0

    @property
    def model_key(self) -> str:
        return self.encoder.model_key

    def __len__(self) -> int:
        return len(self._vectors)

    def __contains__(self, text: object) -> bool:
        return text in self._vectors

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), D) unit vectors, in order."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            self._fill(missing)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])

    def _fill(self, texts: list[str]) -> None:
        keys = {t: text_key(t) for t in texts}
        cached = self.cache.get_many(self.model_key, "text", list(keys.values()))
        todo = []
        for t in texts:
            vec = cached.get(keys[t])
            if vec is None:
                todo.append(t)
            else:
                self._vectors[t] = l2_normalize(vec)
        if not todo:
            return
        bar = _progress_bar(len(todo), "embedding prompts", self.progress)
        try:
            for start in range(0, len(todo), PROMPT_BATCH):
                chunk = todo[start : start + PROMPT_BATCH]
                vectors = np.asarray(self.encoder.encode_texts(chunk), dtype=np.float32)
                if vectors.shape[0] != len(chunk) or not np.isfinite(vectors).all():
                    raise InputError(f"model {self.model_key} returned unusable embeddings for {len(chunk)} prompts")
                self.cache.put_many(self.model_key, "text", {keys[t]: v for t, v in zip(chunk, vectors)})
                for t, v in zip(chunk, l2_normalize(vectors)):
                    self._vectors[t] = v
                self.n_encoded += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()


@dataclass
class EmbeddingSet:
    """Embeddings of a data set, row-aligned with ``sources`` and ``labels``.

    Built once (streamed through the cache); every system, method and
    configuration is then scored on it without touching the model.
    """

    embeddings: np.ndarray
    sources: list[str]
    labels: list[str | None]
    model_key: str
    errors: list[SampleError] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Inputs left out on purpose (e.g. labels that are not classes, with --ignore-unknown)."""
    n_encoded: int = 0
    kinds: tuple[str, ...] = ()
    samples: list[Sample] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.sources)

    @classmethod
    def from_samples(
        cls,
        samples: Sequence[Sample],
        encoder: Encoder,
        cache: EmbeddingStore | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        skipped: Sequence[Sample] = (),
        desc: str = "encoding",
        max_pixels: int | None = None,
    ) -> "EmbeddingSet":
        """Stream the samples through the cached pipeline; failed inputs are kept as errors.

        ``max_pixels``: images above it are errors (default: the pipeline's cap).
        """
        chunks: list[np.ndarray] = []
        kept: list[Sample] = []
        errors: list[SampleError] = []
        n_encoded = 0
        for batch in stream_embeddings(samples, encoder, cache, batch_size, progress, desc, max_pixels=max_pixels):
            errors.extend(batch.errors)
            n_encoded += batch.n_encoded
            if batch.samples:
                kept.extend(batch.samples)
                chunks.append(batch.embeddings)
        embeddings = np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)
        return cls(
            embeddings=l2_normalize(embeddings) if len(embeddings) else embeddings,
            sources=[s.source for s in kept],
            labels=[s.label for s in kept],
            model_key=encoder.model_key,
            errors=errors,
            skipped=[s.source for s in skipped],
            n_encoded=n_encoded,
            kinds=tuple(sorted({s.kind for s in samples})),
            samples=kept,
        )

    def subset(self, rows: Sequence[int] | np.ndarray) -> "EmbeddingSet":
        """The rows given (e.g. a seeded split), errors and skipped inputs left behind."""
        idx = np.asarray(rows, dtype=np.int64)
        return EmbeddingSet(
            embeddings=self.embeddings[idx],
            sources=[self.sources[i] for i in idx],
            labels=[self.labels[i] for i in idx],
            model_key=self.model_key,
            kinds=self.kinds,
            samples=[self.samples[i] for i in idx] if self.samples else [],
        )

    def label_indices(self, class_names: Sequence[str]) -> np.ndarray:
        """Labels as indices into ``class_names``; an InputError names unlabelled or unknown inputs."""
        index = {c: i for i, c in enumerate(class_names)}
        out = np.empty(len(self.labels), dtype=np.int64)
        for row, label in enumerate(self.labels):
            if label is None:
                raise InputError(f"{self.sources[row]}: input has no label (evaluation needs labelled data)")
            if label not in index:
                raise InputError(f"{self.sources[row]}: label {label!r} is not a class of the system")
            out[row] = index[label]
        return out

    def save(self, path: str) -> None:
        """Write the set as ``.npz`` (embeddings, sources, labels, model key) for reuse elsewhere."""
        np.savez_compressed(
            path,
            embeddings=self.embeddings,
            sources=np.asarray(self.sources, dtype=object),
            labels=np.asarray(["" if lbl is None else lbl for lbl in self.labels], dtype=object),
            model_key=np.asarray(self.model_key),
        )

    @classmethod
    def load(cls, path: str) -> "EmbeddingSet":
        try:
            data = np.load(path, allow_pickle=True)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not an embedding set written by EmbeddingSet.save ({exc})") from exc
        labels: list[Any] = [lbl or None for lbl in data["labels"].tolist()]
        return cls(data["embeddings"].astype(np.float32), data["sources"].tolist(), labels, str(data["model_key"]))


def _progress_bar(total: int, desc: str, enabled: bool) -> tqdm[Any] | None:
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="text", file=sys.stderr, dynamic_ncols=True, leave=False)


__all__ = ["EmbeddingSet", "PromptBank"]
