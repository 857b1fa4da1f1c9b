"""Engine-agnostic work on column batches: embed inputs, score embeddings for a system.

A batch is a ``dict[str, numpy.ndarray]`` of equal-length columns, the format Ray
Data's ``map_batches`` (and pandas/pyarrow via ``to_numpy``) hands over. Both
callables are picklable and hold everything they need, so a worker on another node
builds them from their constructor arguments alone:

- :class:`EmbedBatch` loads the model once (per actor) and embeds a ``path`` (or
  ``bytes``) column through the same decode, preprocessing and model call as the
  in-process pipeline, so embeddings, and therefore predictions, are identical.
- :class:`ScoreBatch` scores an ``embedding`` column for one system with the
  model-free :class:`~cotembed.scoring.Scorer` and adds prediction, score,
  abstention and one answer column per question.

An input that cannot be used gets an ``error`` and no prediction; the batch goes on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cotembed.data import Sample

Columns = dict[str, np.ndarray]
"""One batch: column name -> array of equal length."""

ERROR = "error"
EMBEDDING = "embedding"
CONTENT_HASH = "content_hash"


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def content_hash(source: Any, fast_decode: bool | None = None) -> str | None:
    """The key the cache and the Parquet dataset hold an image's embedding under: the SHA-256
    of the file's (or bytes') content with the pipeline's decoding version (and mode), as
    :func:`cotembed._pipeline.image_key` makes it. An image embedded by an older decoding
    (e.g. before EXIF orientation was applied) therefore has another key and is redone."""
    from cotembed._pipeline import image_key, resolve_fast_decode

    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            digest = hashlib.sha256(bytes(source)).hexdigest()
        else:
            digest = _sha256_file(str(source))
    except OSError:
        return None  # unreadable: the pipeline reports why
    return image_key(digest, resolve_fast_decode(fast_decode))


def _column(batch: Mapping[str, Any], name: str) -> list[Any]:
    values = batch[name]
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


class EmbedBatch:
    """Embeds the images of a batch; the model is loaded once per instance (one per actor).

    Input columns: ``path`` (file paths) or ``bytes`` (file contents, with ``path`` as
    their name), optional ``label``. Adds ``embedding`` (float32, as the model returns
    it, like the cache: scoring normalises),
    ``content_hash`` and ``error`` (empty string when the input was used).
    """

    def __init__(self, model: str, batch_size: int | None = None, device: str | None = None, max_pixels: int | None = None,
                 fast_decode: bool = False):
        from cotembed.encoders import load_encoder

        options: dict[str, Any] = {}
        if batch_size:
            options["batch_size"] = batch_size
        if device:
            options["device"] = device
        self.encoder = load_encoder(model, **options)
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.fast_decode = fast_decode

    def __call__(self, batch: Mapping[str, Any]) -> Columns:
        from cotembed._pipeline import stream_embeddings

        paths = [str(p) for p in _column(batch, "path")]
        blobs = _column(batch, "bytes") if "bytes" in batch else None
        labels = [label if isinstance(label, str) else None  # a missing label may arrive as NaN (a pandas block)
                  for label in (_column(batch, "label") if "label" in batch else [None] * len(paths))]
        samples = [Sample(p, "image", Path(p), None, labels[i]) if blobs is None else Sample.from_bytes(blobs[i], p, labels[i])
                   for i, p in enumerate(paths)]
        hashes = [content_hash(p if blobs is None else blobs[i], self.fast_decode) for i, p in enumerate(paths)]
        dim = 0
        vectors: dict[str, np.ndarray] = {}
        errors: dict[str, str] = {}
        for embedded in stream_embeddings(samples, self.encoder, None, self.batch_size, max_pixels=self.max_pixels,
                                          fast_decode=self.fast_decode):
            errors.update((e.source, e.error) for e in embedded.errors)
            if embedded.samples:
                raw = np.asarray(embedded.embeddings, dtype=np.float32)  # as the model gave them: the scorer normalises
                dim = raw.shape[1]
                vectors.update((s.source, v) for s, v in zip(embedded.samples, raw))
        dim = dim or int(getattr(self.encoder, "dim", 0) or 0)
        matrix = np.zeros((len(paths), dim), dtype=np.float32)
        for row, p in enumerate(paths):
            if p in vectors:
                matrix[row] = vectors[p]
        return {
            "path": np.asarray(paths, dtype=object),
            "label": np.asarray(labels, dtype=object),
            CONTENT_HASH: np.asarray([h or "" for h in hashes], dtype=object),
            EMBEDDING: matrix,
            ERROR: np.asarray([errors.get(p, "" if p in vectors else "no embedding") for p in paths], dtype=object),
        }


class ScoreBatch:
    """Scores an ``embedding`` column for one system; no model (prompt vectors are given).

    Adds ``prediction`` (None when abstaining or on error), ``score``, ``abstained``,
    and per question ``answer:<group>`` (the most probable option) and ``p:<group>``
    (its probability). ``abstain_below``: abstain when the top score is under it.
    Rows with a non-empty ``error`` are passed through unscored. ``answers=False`` leaves
    out the per-question columns: the class scores then come from the scorer's fused path
    (two matrix products) and no per-row Python objects are built beyond the predictions.
    """

    def __init__(self, system: Any, prompt_vectors: Mapping[str, np.ndarray], temperature: float, method: str = "cot",
                 hybrid_weight: float = 1.0, abstain_below: float | None = None, keep_embedding: bool = False,
                 answers: bool = True):
        from cotembed.scoring import Scorer, ScoringConfig

        methods = (method, "cot") if method != "cot" else ("cot",)
        self.scorer = Scorer(system, prompt_vectors, ScoringConfig(float(temperature), float(hybrid_weight)), methods)
        self.method = method
        self.abstain_below = abstain_below
        self.keep_embedding = keep_embedding
        self.answers = answers

    def __call__(self, batch: Mapping[str, Any]) -> Columns:
        from cotembed.scoring import get_method

        column = batch[EMBEDDING]
        if isinstance(column, np.ndarray) and column.ndim == 2 and column.dtype != object:
            embeddings = np.asarray(column, dtype=np.float32)  # already a matrix: no copy for float32
        else:  # rows as separate arrays
            embeddings = np.stack([np.asarray(v, dtype=np.float32) for v in column])
        n = len(embeddings)
        if ERROR in batch:
            error = np.array(batch[ERROR], dtype=object)
            ok = np.asarray(error == "", dtype=bool)
        else:
            error = np.full(n, "", dtype=object)
            ok = np.ones(n, dtype=bool)
        compiled = self.scorer.compiled
        out: Columns = {k: np.asarray(v) for k, v in batch.items() if k != EMBEDDING or self.keep_embedding}
        out[ERROR] = error
        predictions = np.full(n, None, dtype=object)
        scores = np.full(n, np.nan, dtype=np.float32)
        abstained = np.zeros(n, dtype=bool)
        groups = compiled.group_names if self.answers else ()
        answers = {g: np.full(n, None, dtype=object) for g in groups}
        confidence = {g: np.full(n, np.nan, dtype=np.float32) for g in groups}
        rows = np.flatnonzero(ok)
        x = embeddings if len(rows) == n else embeddings[rows]  # every row usable (the usual case): no copy
        finite = np.isfinite(x.sum(axis=1))  # a NaN or inf anywhere in a row makes its sum non-finite
        if not finite.all():
            finite = np.isfinite(x).all(axis=1)  # exact, row by row: a sum may merely have overflowed
            for bad in rows[~finite]:
                error[bad] = "embedding has NaN or infinite values"
            rows, x = rows[finite], x[finite]
        if len(rows):
            batch_scores = self.scorer.batch(x, (self.method, "cot")) if self.answers else None
            class_scores = (get_method(self.method).score(batch_scores) if batch_scores is not None
                            else self.scorer.scores(x, self.method))
            best = class_scores.argmax(axis=1)
            top = class_scores[np.arange(len(rows)), best]
            names = np.asarray(compiled.class_names, dtype=object)
            scores[rows] = top
            predictions[rows] = names[best]
            if self.abstain_below is not None:
                low = top < self.abstain_below
                abstained[rows[low]] = True
                predictions[rows[low]] = None
            probs = batch_scores.option_probs if batch_scores is not None else None
            options = [np.asarray(group.options, dtype=object) for group in self.scorer.system.groups]
            for g, group in enumerate(groups):
                assert probs is not None
                block = probs[:, compiled.offsets[g]:compiled.offsets[g + 1]]
                pick = block.argmax(axis=1)
                answers[group][rows] = options[g][pick]
                confidence[group][rows] = block[np.arange(len(rows)), pick]
        out["prediction"] = predictions
        out["score"] = scores
        out["abstained"] = abstained
        for group in groups:
            out[f"answer:{group}"] = answers[group]
            out[f"p:{group}"] = confidence[group]
        return out


class EmbedScoreBatch:
    """Embeds and scores a batch in one call: what one actor does for ``classify --engine ray``.

    Scoring where the embeddings are made saves a second pipeline stage (its tasks, the
    CPU slots they wait for, and the embeddings passed between the two through the object
    store). Output columns: those of :class:`ScoreBatch` on :class:`EmbedBatch`'s output.
    """

    def __init__(self, model: str, system: Any, prompt_vectors: Mapping[str, np.ndarray], temperature: float, method: str = "cot",
                 hybrid_weight: float = 1.0, abstain_below: float | None = None, batch_size: int | None = None,
                 max_pixels: int | None = None):
        self.embed = EmbedBatch(model, batch_size=batch_size, max_pixels=max_pixels)
        self.score = ScoreBatch(system, prompt_vectors, temperature, method, hybrid_weight, abstain_below)

    def __call__(self, batch: Mapping[str, Any]) -> Columns:
        return self.score(self.embed(batch))


__all__ = ["CONTENT_HASH", "EMBEDDING", "ERROR", "Columns", "EmbedBatch", "EmbedScoreBatch", "ScoreBatch", "content_hash"]
