"""Streaming, cached, batched encoding of samples.

Reading, hashing, decoding and preprocessing run in a worker thread one batch
ahead of the model, so the encoder never waits on disk or PIL. Finished batches
are written to the cache before they are yielded: a run killed half way keeps
them, and the next run encodes only what is missing. A sample that cannot be
read or decoded becomes a :class:`SampleError` and the run goes on.
"""

from __future__ import annotations

import io
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from cotembed.cache import EmbeddingStore, NoCache, content_key, text_key
from cotembed.data import Sample, text_samples
from cotembed.encoders.base import Encoder
from cotembed.errors import CotembedError, InputError

PREFETCH_BATCHES = 2


@dataclass(frozen=True)
class SampleError:
    """An input that could not be used, and why."""

    source: str
    error: str

    def to_dict(self) -> dict[str, str]:
        return {"input": self.source, "error": self.error}


@dataclass
class EmbeddedBatch:
    """Embeddings of the samples of one batch that succeeded, in input order."""

    samples: list[Sample]
    embeddings: np.ndarray
    errors: list[SampleError] = field(default_factory=list)
    n_encoded: int = 0
    """How many of these embeddings were computed now (the rest came from the cache)."""


@dataclass
class _Prepared:
    samples: list[Sample]
    keys: list[str]
    cached: dict[str, np.ndarray]
    to_encode: list[str]
    model_input: Any
    errors: list[SampleError]


def _decode_image(data: bytes, min_side: int | None = None) -> Image.Image:
    """Decode to RGB. Given the model's input size, JPEGs are decoded at the smallest
    DCT scale that still keeps both sides >= ``min_side``: the encoder downsamples to
    that size anyway, and full-size decoding would cost more than the resize itself."""
    with Image.open(io.BytesIO(data)) as img:
        if min_side:
            img.draft("RGB", (min_side, min_side))
        img.load()
        return img.convert("RGB")


class _Preparer:
    """Worker-thread half of the pipeline: I/O, hashing, cache lookup, decode, preprocess."""

    def __init__(self, encoder: Encoder, store: EmbeddingStore):
        self.encoder = encoder
        self.store = store
        self.min_side: int | None = getattr(encoder, "input_size", None)

    def __call__(self, batch: list[Sample]) -> _Prepared:
        if batch[0].kind == "text":
            return self._texts(batch)
        return self._images(batch)

    def _texts(self, batch: list[Sample]) -> _Prepared:
        keys = [text_key(s.text or "") for s in batch]
        cached = self.store.get_many(self.encoder.model_key, "text", keys)
        todo = list(dict.fromkeys(k for k in keys if k not in cached))
        text_of = {k: s.text or "" for k, s in zip(keys, batch)}
        return _Prepared(batch, keys, cached, todo, [text_of[k] for k in todo], [])

    def _images(self, batch: list[Sample]) -> _Prepared:
        errors: list[SampleError] = []
        ok: list[Sample] = []
        keys: list[str] = []
        raw: dict[str, bytes] = {}
        for s in batch:
            try:
                data = s.path.read_bytes()  # type: ignore[union-attr]
            except OSError as exc:
                errors.append(SampleError(s.source, f"cannot read: {exc.strerror or exc}"))
                continue
            key = content_key(data)
            ok.append(s)
            keys.append(key)
            raw[key] = data
        cached = self.store.get_many(self.encoder.model_key, "image", keys) if keys else {}
        images: dict[str, Image.Image] = {}
        bad: set[str] = set()
        for s, key in zip(ok, keys):
            if key in cached or key in images or key in bad:
                continue
            try:
                images[key] = _decode_image(raw[key], self.min_side)
            except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
                bad.add(key)
                errors.append(SampleError(s.source, f"cannot decode image: {exc}"))
        model_input, encoded, failed = self._preprocess(images)
        for key, reason in failed.items():
            bad.add(key)
            errors.extend(SampleError(s.source, f"cannot preprocess image: {reason}") for s, k in zip(ok, keys) if k == key)
        kept = [(s, k) for s, k in zip(ok, keys) if k not in bad]
        return _Prepared([s for s, _ in kept], [k for _, k in kept], cached, encoded, model_input, errors)

    def _preprocess(self, images: dict[str, Image.Image]) -> tuple[Any, list[str], dict[str, str]]:
        """Preprocess the batch at once; if that fails, image by image to isolate the culprit.

        Returns the model input, the keys it holds (in order) and the keys that failed.
        """
        if not images:
            return None, [], {}
        try:
            return self.encoder.preprocess(list(images.values())), list(images), {}
        except Exception:  # noqa: BLE001 - any backend error; retried per image below
            pass
        good: list[str] = []
        failed: dict[str, str] = {}
        for key, img in images.items():
            try:
                self.encoder.preprocess([img])
                good.append(key)
            except Exception as exc:  # noqa: BLE001
                failed[key] = str(exc) or type(exc).__name__
        model_input = self.encoder.preprocess([images[k] for k in good]) if good else None
        return model_input, good, failed


def check_modality(encoder: Encoder, samples: Sequence[Sample]) -> None:
    kinds = {s.kind for s in samples}
    unsupported = kinds - set(encoder.modalities)
    if unsupported:
        raise InputError(
            f"model {encoder.model_key} cannot encode {', '.join(sorted(unsupported))} inputs "
            f"(it takes: {', '.join(sorted(encoder.modalities))})"
        )


def stream_embeddings(
    samples: Sequence[Sample],
    encoder: Encoder,
    store: EmbeddingStore | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    desc: str = "encoding",
) -> Iterator[EmbeddedBatch]:
    """Yield embeddings batch by batch, in input order; memory stays bounded by the batch size."""
    check_modality(encoder, samples)
    store = store if store is not None else NoCache()
    size = max(1, batch_size or int(encoder.batch_size))
    batches = [list(samples[i : i + size]) for i in range(0, len(samples), size)]
    prepare = _Preparer(encoder, store)
    unit = "img" if samples and samples[0].kind == "image" else "text"
    bar = _progress_bar(len(samples), desc, unit, progress)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cotembed-prep") as pool:
        pending: deque[Future[_Prepared]] = deque()
        queue = iter(batches)
        for batch in queue:
            pending.append(pool.submit(prepare, batch))
            if len(pending) >= PREFETCH_BATCHES:
                break
        try:
            while pending:
                prepared = pending.popleft().result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.append(pool.submit(prepare, nxt))
                yield _finish(prepared, encoder, store)
                if bar is not None:
                    bar.update(len(prepared.samples) + len(prepared.errors))
        finally:
            for fut in pending:
                fut.cancel()
            if bar is not None:
                bar.close()


def embed_texts(texts: Sequence[str], encoder: Encoder, store: EmbeddingStore | None = None) -> np.ndarray:
    """(len(texts), D) embeddings through the same cached path as inputs: prompts are
    encoded once per (model, text) and read from the cache afterwards."""
    chunks = [batch.embeddings for batch in stream_embeddings(text_samples(list(texts)), encoder, store)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)


def _finish(prepared: _Prepared, encoder: Encoder, store: EmbeddingStore) -> EmbeddedBatch:
    """Main-thread half: run the model on what the cache lacked, store it, assemble the batch."""
    kind = prepared.samples[0].kind if prepared.samples else "image"
    vectors = dict(prepared.cached)
    if prepared.to_encode:
        if kind == "text":
            encoded = encoder.encode_texts(prepared.model_input)
        else:
            encoded = encoder.encode_preprocessed(prepared.model_input)
        encoded = np.asarray(encoded, dtype=np.float32)
        if encoded.shape[0] != len(prepared.to_encode):
            raise CotembedError(f"model {encoder.model_key} returned {encoded.shape[0]} embeddings for {len(prepared.to_encode)} inputs")
        new = dict(zip(prepared.to_encode, encoded))
        store.put_many(encoder.model_key, kind, new)
        vectors.update(new)
    if prepared.samples:
        embeddings = np.stack([vectors[k] for k in prepared.keys]).astype(np.float32, copy=False)
    else:
        embeddings = np.zeros((0, 0), dtype=np.float32)
    return EmbeddedBatch(prepared.samples, embeddings, prepared.errors, len(prepared.to_encode))


def _progress_bar(total: int, desc: str, unit: str, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)
