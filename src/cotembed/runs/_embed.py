"""Embed images or texts into a Parquet dataset: one request in, what was written out. Resumable:
rows the dataset already holds (same content) are skipped, every finished part file is kept. An
image the dataset holds under an older decoding (another decoding version in its content hash) is
embedded again, and its older row dropped once the new one is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cotembed._parquet import DEFAULT_VECTOR_LAYOUT
from cotembed.runs._options import ModelOptions
from cotembed.runs._resources import RunResources


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    """What to embed, with which model, into which dataset.

    Parameters
    ----------
    data : tuple of str
        Image files, folders, or CSV/JSONL manifests (``path,label`` or ``text,label``).
    out : str
        The dataset folder: Parquet part files plus ``_cotembed.json``.
    model : ModelOptions
        The model (``spec``), batch size, device, image limits, cache.
    part_rows : int or None
        Rows per Parquet part file (None: the writer's default).
    vector_layout : str
        Embedding column of a new dataset: ``binary`` (raw float32 bytes, faster to re-score; default)
        or ``list`` (float32 fixed-size list, read as numbers by any data tool); an existing dataset
        keeps its own.

    Examples
    --------
    >>> from cotembed.runs import EmbedRequest, embed
    >>> embed(EmbedRequest((".cotembed-data/critters-easy",), "critters-easy.parquet")).written   # doctest: +SKIP
    """

    data: tuple[str, ...]
    out: str
    model: ModelOptions = field(default_factory=ModelOptions)
    part_rows: int | None = None
    vector_layout: str = DEFAULT_VECTOR_LAYOUT


@dataclass(frozen=True, slots=True)
class EmbedResult:
    """What the run wrote: rows written, rows already there, older rows of the same images replaced
    (``superseded``), the model key and dimension, and the inputs that could not be embedded."""

    out: str
    model: str
    inputs: int
    skipped_existing: int
    written: int
    superseded: int
    dim: int | None
    errors: tuple[dict[str, str], ...]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``cotembed embed --format json``."""
        return {"out": self.out, "model": self.model, "inputs": self.inputs, "skipped_existing": self.skipped_existing,
                "written": self.written, "superseded": self.superseded, "dim": self.dim, "errors": list(self.errors)}


def embed(request: EmbedRequest) -> EmbedResult:
    """Embed the request's inputs (through the cache) and append them to the dataset ``out``.

    Parameters
    ----------
    request : EmbedRequest
        The inputs, the dataset folder, the model.

    Returns
    -------
    EmbedResult
        What was written; ``to_dict()`` is ``embed --format json``.
    """
    from cotembed._parquet import PART_ROWS, EmbeddingWriter, check_model, drop_rows, existing_hashes, read_info, require_pyarrow
    from cotembed._pipeline import stream_embeddings
    from cotembed.cache import text_key
    from cotembed.data import collect_samples
    from cotembed.distributed.batch import content_hash

    require_pyarrow()
    model = request.model
    samples = collect_samples(list(request.data), allow_outside=model.allow_outside_paths)
    with RunResources(model) as res:
        encoder = res.encoder(model.spec)
        info = read_info(request.out)
        done: set[str] = set()
        if info is not None:
            check_model(info, request.out, encoder.model_key)
            done = existing_hashes(request.out)
        hashes = {s.source: (text_key(s.text or "") if s.kind == "text" else content_hash(s.path)) for s in samples}
        todo = [s for s in samples if hashes[s.source] is None or hashes[s.source] not in done]
        errors: list[dict[str, str]] = []
        writer: EmbeddingWriter | None = None
        try:
            for batch in stream_embeddings(todo, encoder, res.cache, model.batch_size, not model.quiet, "embedding",
                                           max_pixels=model.max_pixels):
                errors.extend(e.to_dict() for e in batch.errors)
                if not batch.samples:
                    continue
                if writer is None:
                    writer = EmbeddingWriter(request.out, encoder.model_key, batch.embeddings.shape[1], model_spec=model.spec,
                                             part_rows=request.part_rows or PART_ROWS, vector_layout=request.vector_layout)
                writer.add([s.source for s in batch.samples], [s.label for s in batch.samples], [s.kind for s in batch.samples],
                           [hashes[s.source] or "" for s in batch.samples], batch.embeddings)
        finally:
            if writer is not None:
                writer.close()
        images_written = {hashes[s.source] for s in todo if s.kind != "text"} & (writer.done if writer else set())
        superseded = drop_rows(request.out, "content_hash", superseded_keys(done, images_written))  # after the new rows: never a loss
        return EmbedResult(out=request.out, model=encoder.model_key, inputs=len(samples),
                           skipped_existing=len(samples) - len(todo), written=writer.n_written if writer else 0,
                           superseded=superseded,
                           dim=writer.info.dim if writer else (info.dim if info else None), errors=tuple(errors))


def superseded_keys(existing: set[str], written: set[Any]) -> set[str]:
    """Keys of rows that the rows just written replace: the same image content under another
    decoding version or mode (``<sha256>`` or ``<sha256>:d1`` against ``<sha256>:d2``)."""
    digests = {key.split(":", 1)[0] for key in written if key}
    return {key for key in existing if key not in written and key.split(":", 1)[0] in digests}


__all__ = ["EmbedRequest", "EmbedResult", "embed", "superseded_keys"]
