"""Embeddings as a Parquet dataset: a folder a team can share and query with its data tools.

Layout of ``DIR``::

    DIR/_cotembed.json         model key, model spec, dim, normalisation, creation time, version
    DIR/part-<time>-<n>.parquet   one row per input: source, label, kind, content_hash, model_key, embedding

``embedding`` is by default (layout ``binary``) a ``fixed_size_binary[4 * dim]`` column of
little-endian float32, or with layout ``list`` a ``fixed_size_list<float32>[dim]`` column
that any data tool reads as a float list. Parquet stores a list with a repetition level
per value, which pyarrow decodes value by value (apache/arrow#34510): re-scoring a ``list``
dataset spends most of its time decoding, so ``binary`` re-scores about twice as fast
(``bench_distributed.py`` measures both side by side) and is the default; ``list`` stays
for datasets other tools read as numbers. Either way a reader gets a ``(rows, dim)``
matrix without copying (a list column's flat values buffer, reshaped). Part files are written whole and renamed into
place (names starting with ``_`` or ``.`` are ignored by Parquet readers), so an
interrupted run leaves only finished parts, and a rerun skips the content hashes they
hold. pyarrow is the optional extra ``parquet``; it is imported only here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from cotembed.errors import CotembedError, InputError

if TYPE_CHECKING:
    from cotembed._embeddings import EmbeddingSet
    from cotembed._pipeline import SampleError

METADATA_FILE = "_cotembed.json"
FORMAT_VERSION = 1
PART_ROWS = 8192
"""Rows per part file written by :class:`EmbeddingWriter` (a crash loses at most this many)."""
READ_BATCH_ROWS = 65536
"""Rows per record batch when streaming a dataset: memory is bounded by this, not the dataset."""
COLUMNS = ("source", "label", "kind", "content_hash", "model_key", "embedding")
VECTOR_LAYOUTS = ("binary", "list")
"""How the ``embedding`` column is stored: raw little-endian float32 bytes, or a float32 fixed-size list."""
DEFAULT_VECTOR_LAYOUT = "binary"
"""Layout of a new dataset: the one that re-scores fastest (see the module's docstring)."""


def require_pyarrow() -> Any:
    """pyarrow, or an error naming the extra to install."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise CotembedError("Parquet embeddings need pyarrow: pip install 'cotembed[parquet]'") from exc
    return pyarrow


@dataclass(frozen=True)
class DatasetInfo:
    """The metadata file: what every row of the dataset was computed with."""

    model_key: str
    dim: int
    normalisation: str = "none"
    """``none``: vectors as the model returned them (as the cache holds them; readers
    normalise, so scores match the in-process engine bit for bit); ``l2``: unit length."""
    model_spec: str | None = None
    created: str = ""
    cotembed_version: str = ""
    format_version: int = FORMAT_VERSION
    vector_layout: str = DEFAULT_VECTOR_LAYOUT
    """One of :data:`VECTOR_LAYOUTS` (a metadata file without it is from before ``binary``: ``list``)."""

    def to_dict(self) -> dict[str, Any]:
        return {"model_key": self.model_key, "model_spec": self.model_spec, "dim": self.dim, "normalisation": self.normalisation,
                "created": self.created, "cotembed_version": self.cotembed_version, "format_version": self.format_version,
                "vector_layout": self.vector_layout}

    @classmethod
    def new(cls, model_key: str, dim: int, normalisation: str = "none", model_spec: str | None = None,
            vector_layout: str = DEFAULT_VECTOR_LAYOUT) -> "DatasetInfo":
        from cotembed import __version__

        if vector_layout not in VECTOR_LAYOUTS:
            raise InputError(f"vector layout {vector_layout!r}: expected one of {', '.join(VECTOR_LAYOUTS)}")
        created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
        return cls(model_key, int(dim), normalisation, model_spec, created, __version__, vector_layout=vector_layout)


def read_info(directory: str | Path) -> DatasetInfo | None:
    """The dataset's metadata, None when ``directory`` holds no dataset yet."""
    path = Path(directory) / METADATA_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return DatasetInfo(model_key=str(data["model_key"]), dim=int(data["dim"]), normalisation=str(data.get("normalisation", "l2")),
                           model_spec=data.get("model_spec"), created=str(data.get("created", "")),
                           cotembed_version=str(data.get("cotembed_version", "")), format_version=int(data.get("format_version", 1)),
                           vector_layout=str(data.get("vector_layout", "list")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a cotembed embeddings metadata file ({exc})") from exc


def _write_info(directory: Path, info: DatasetInfo) -> None:
    path = directory / METADATA_FILE
    tmp = directory / f".{METADATA_FILE}.tmp"
    tmp.write_text(json.dumps(info.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def check_model(info: DatasetInfo, directory: str | Path, model_key: str | None, dim: int | None = None) -> None:
    """Refuse a dataset computed with another model (or dimension): both keys named."""
    if model_key is not None and info.model_key != model_key:
        raise InputError(f"--embeddings {directory}: computed with model {info.model_key!r}, not {model_key!r}; "
                         "use the same model or another folder")
    if dim is not None and info.dim != dim:
        raise InputError(f"--embeddings {directory}: vectors of {info.dim} values, but model {model_key!r} gives {dim}")


def part_files(directory: str | Path) -> list[Path]:
    """The dataset's Parquet files in write order (hidden and ``_`` files skipped, as Parquet readers do)."""
    root = Path(directory)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*.parquet") if not any(part.startswith((".", "_")) for part in p.relative_to(root).parts))


def _schema(dim: int, layout: str = "list") -> Any:
    pa = require_pyarrow()
    vector = pa.binary(4 * dim) if layout == "binary" else pa.list_(pa.float32(), dim)
    return pa.schema([
        ("source", pa.string()), ("label", pa.string()), ("kind", pa.string()), ("content_hash", pa.string()),
        ("model_key", pa.string()), ("embedding", vector),
    ])


def _vector_array(vectors: np.ndarray, dim: int, layout: str) -> Any:
    """(rows, dim) float32 -> the ``embedding`` column in ``layout`` (no copy of the values)."""
    pa = require_pyarrow()
    flat = np.ascontiguousarray(vectors, dtype="<f4").reshape(-1)
    if layout == "binary":
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(4 * dim), len(vectors), [None, pa.py_buffer(flat)])
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.float32()), dim)


def existing_hashes(directory: str | Path) -> set[str]:
    """Content hashes already written (only that column is read)."""
    import pyarrow.parquet as pq

    found: set[str] = set()
    for path in part_files(directory):
        found.update(h for h in pq.read_table(path, columns=["content_hash"]).column("content_hash").to_pylist() if h)
    return found


def drop_rows(directory: str | Path, column: str, values: set[str], files: Sequence[Path] | None = None) -> int:
    """Remove the rows whose ``column`` is in ``values`` from the dataset's part files
    (only from ``files`` when given, e.g. the parts that existed before a run); returns how many.

    For rows a rerun superseded (an input embedded again by a newer decoding, a failed input
    that has now succeeded): each part file that holds one is rewritten without it, written
    hidden and renamed over the old one (a part left empty is deleted), so an interrupted
    run leaves either the old part or the new one, never half of one. Callers write the new
    rows first: a crash in between leaves a duplicate, never a loss.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not values:
        return 0
    wanted = require_pyarrow().array(sorted(values), type=require_pyarrow().string())
    dropped = 0
    for path in part_files(directory) if files is None else files:
        try:
            keys = pq.read_table(path, columns=[column]).column(column)
        except Exception:  # no such column, or a damaged file: nothing of ours to drop
            continue
        hit = pc.fill_null(pc.is_in(keys, value_set=wanted), False)
        n = int(pc.sum(hit).as_py() or 0)
        if not n:
            continue
        if n == len(keys):
            path.unlink()
        else:
            table = pq.read_table(path)
            tmp = path.with_name(f".{path.name}.tmp")
            pq.write_table(table.filter(pc.invert(hit)), tmp, compression="none", use_dictionary=False)
            os.replace(tmp, path)
        dropped += n
    return dropped


class EmbeddingWriter:
    """Appends rows to a dataset folder, one part file per :data:`PART_ROWS` rows.

    Opening an existing folder checks that its model and dimension match; ``done``
    holds the content hashes it already has, so callers can skip them (resume).
    """

    def __init__(self, directory: str | Path, model_key: str, dim: int, normalisation: str = "none",
                 model_spec: str | None = None, part_rows: int = PART_ROWS, vector_layout: str = DEFAULT_VECTOR_LAYOUT):
        require_pyarrow()
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"--out {directory}: cannot create ({exc.strerror or exc})") from exc
        existing = read_info(self.directory)
        if existing is not None:
            check_model(existing, directory, model_key, dim)
            self.info = existing
        else:
            if part_files(self.directory):
                raise InputError(f"--out {directory}: holds Parquet files but no {METADATA_FILE}; use an empty folder")
            self.info = DatasetInfo.new(model_key, dim, normalisation, model_spec, vector_layout)
            _write_info(self.directory, self.info)
        self.done = existing_hashes(self.directory)
        self.part_rows = part_rows
        self.n_written = 0
        self._rows: dict[str, list[Any]] = {c: [] for c in COLUMNS if c != "embedding"}
        self._vectors: list[np.ndarray] = []
        self._stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self._run = uuid.uuid4().hex[:12]
        self._parts = 0

    def add(self, sources: Sequence[str | None], labels: Sequence[str | None], kinds: Sequence[str], hashes: Sequence[str],
            vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(hashes), -1)
        if vectors.shape[1] != self.info.dim:
            raise CotembedError(f"{self.directory}: vectors of {vectors.shape[1]} values for a dataset of dim {self.info.dim}")
        self._rows["source"].extend(sources)
        self._rows["label"].extend(labels)
        self._rows["kind"].extend(kinds)
        self._rows["content_hash"].extend(hashes)
        self._rows["model_key"].extend([self.info.model_key] * len(hashes))
        self._vectors.append(vectors)
        self.done.update(hashes)
        while len(self._rows["content_hash"]) >= self.part_rows:
            self._write(self.part_rows)

    def flush(self) -> None:
        """Write every pending row (the last part may be short)."""
        if self._rows["content_hash"]:
            self._write(len(self._rows["content_hash"]))

    def _write(self, n: int) -> None:
        """The first ``n`` pending rows as one part file, atomically (written hidden, then renamed)."""
        pa = require_pyarrow()
        import pyarrow.parquet as pq

        vectors = np.concatenate(self._vectors)
        embedding = _vector_array(vectors[:n], self.info.dim, self.info.vector_layout)
        arrays = [pa.array(self._rows[c][:n], type=pa.string()) for c in COLUMNS if c != "embedding"] + [embedding]
        table = pa.Table.from_arrays(arrays, schema=_schema(self.info.dim, self.info.vector_layout))
        name = f"part-{self._stamp}-{self._run}-{self._parts:05d}.parquet"  # unique per writer: never replaces a part
        tmp = self.directory / f".{name}.tmp"
        # Vectors uncompressed and without dictionary: float32 embeddings do not compress, and
        # skipping both doubles read speed; the repetitive text columns keep a dictionary.
        pq.write_table(table, tmp, compression="none", use_dictionary=["label", "kind", "model_key"])
        os.replace(tmp, self.directory / name)
        self._parts += 1
        self.n_written += n
        self._rows = {c: values[n:] for c, values in self._rows.items()}
        self._vectors = [vectors[n:]] if n < len(vectors) else []

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> "EmbeddingWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # finished rows are kept even when the run fails


@dataclass
class EmbeddingBatch:
    """One streamed slice of a dataset: usable rows and the rows left out (by source)."""

    sources: list[str]
    labels: list[str | None]
    hashes: list[str]
    embeddings: np.ndarray
    errors: list["SampleError"]
    kinds: list[str]


def iter_batches(directory: str | Path, model_key: str | None = None, batch_rows: int = READ_BATCH_ROWS,
                 columns: Sequence[str] = COLUMNS, prefetch: bool = False) -> Iterator[EmbeddingBatch]:
    """Stream the dataset in record batches of at most ``batch_rows`` rows.

    ``prefetch``: read the next batch in a background thread while the caller works on
    this one (Parquet decoding and numpy both release the GIL, so reading and scoring
    overlap on two cores); at most two batches are held.
    """
    batches = _iter_batches(directory, model_key, batch_rows, columns)
    return _prefetched(batches) if prefetch else batches


def _prefetched(items: Iterator[EmbeddingBatch]) -> Iterator[EmbeddingBatch]:
    """``items``, each produced one step ahead in a daemon thread (errors re-raised here)."""
    import queue
    import threading

    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                ready.put(("item", item))
            ready.put(("done", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            ready.put(("error", exc))

    worker = threading.Thread(target=produce, name="parquet-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                ready.get(timeout=0.05)
            except queue.Empty:
                pass


def _iter_batches(directory: str | Path, model_key: str | None, batch_rows: int,
                  columns: Sequence[str]) -> Iterator[EmbeddingBatch]:
    """Stream the dataset in record batches of at most ``batch_rows`` rows.

    Memory is bounded by the batch: vectors are a zero-copy view of Arrow's buffer.
    Rows with a vector of the wrong length, a non-finite value or another model key are
    left out and reported as errors by source; a dataset of another model is refused.
    ``columns``: the text columns to return besides the vectors; only those are read
    (the others come back as empty lists), so asking for none reads just the vectors
    and the (dictionary-encoded) model key.
    """
    import pyarrow.parquet as pq

    require_pyarrow()
    info = read_info(directory)
    if info is None:
        raise InputError(f"--embeddings {directory}: no {METADATA_FILE} (write one with `cotembed embed DATA --out DIR`)")
    check_model(info, directory, model_key)
    files = part_files(directory)
    if not files:
        raise InputError(f"--embeddings {directory}: no Parquet files")
    for path in files:
        try:
            reader = pq.ParquetFile(path)
            names = reader.schema_arrow.names
            if "model_key" in names:  # kept as a dictionary: one comparison per batch, not per row
                reader = pq.ParquetFile(path, read_dictionary=["model_key"])
        except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a damaged file
            raise InputError(f"--embeddings {path}: not a readable Parquet file ({exc})") from exc
        if "embedding" not in names:
            raise InputError(f"--embeddings {path}: no embedding column")
        present = [c for c in COLUMNS if c in names and (c in columns or c in ("embedding", "model_key"))]
        first = 0
        for record in reader.iter_batches(batch_size=batch_rows, columns=present):
            yield _decode(record, info, _PartRows(path, first, record.num_rows, "source" in names), columns)
            first += record.num_rows


@dataclass(frozen=True)
class _PartRows:
    """Where a record batch sits in its part file, to name bad rows by source without reading
    the source column for every batch."""

    path: Path
    first: int
    n: int
    has_source: bool

    def sources(self) -> list[str | None]:
        import pyarrow.parquet as pq

        if not self.has_source:
            return [None] * self.n
        column = pq.read_table(self.path, columns=["source"]).column("source")
        return list(column.slice(self.first, self.n).to_pylist())


def _texts(record: Any, name: str, wanted: Sequence[str]) -> list[Any]:
    if name in wanted and name in record.schema.names:
        return list(record.column(name).to_pylist())
    return []


def _vectors(column: Any, info: DatasetInfo, part: _PartRows, problems: dict[int, str]) -> np.ndarray:
    """The ``embedding`` column as a (rows, dim) float32 matrix: a view of Arrow's buffer
    for both layouts; any other shape (variable lists, other sizes, nulls) row by row."""
    import pyarrow as pa

    n, dim = len(column), info.dim
    if column.null_count == 0:
        if pa.types.is_fixed_size_binary(column.type) and column.type.byte_width == 4 * dim:
            return np.frombuffer(column.buffers()[1], dtype="<f4", count=n * dim, offset=column.offset * 4 * dim).reshape(n, dim)
        if pa.types.is_fixed_size_list(column.type) and column.type.list_size == dim and pa.types.is_float32(column.type.value_type):
            values = column.flatten()  # honours the array's offset, unlike .values
            if values.null_count == 0:
                return np.asarray(values.to_numpy(zero_copy_only=True).reshape(n, dim))
    vectors = np.zeros((n, dim), dtype=np.float32)
    binary = pa.types.is_fixed_size_binary(column.type) or pa.types.is_binary(column.type)
    for row, value in enumerate(column.to_pylist()):
        if binary and value is not None and len(value) != 4 * dim:
            problems[row] = f"{part.path.name}: vector has {len(value)} bytes, expected {4 * dim} ({dim} float32)"
        elif binary and value is not None:
            vectors[row] = np.frombuffer(value, dtype="<f4")
        elif value is None or len(value) != dim:
            problems[row] = f"{part.path.name}: vector has {0 if value is None else len(value)} values, expected {dim}"
        else:
            vectors[row] = np.asarray([np.nan if v is None else v for v in value], dtype=np.float32)
    return vectors


def _other_models(column: Any, model_key: str) -> np.ndarray | None:
    """Rows whose model key is not ``model_key`` (None when there are none: the common case
    is decided from the column's dictionary, not row by row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type) and column.null_count == 0:
        keys = column.dictionary.to_pylist()
        if all(k == model_key for k in keys):
            return None
        column = column.dictionary_decode()
    same = pc.fill_null(pc.equal(column, model_key), False)
    if pc.all(same).as_py():
        return None
    return np.flatnonzero(~np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool))


def _decode(record: Any, info: DatasetInfo, part: _PartRows, wanted: Sequence[str]) -> EmbeddingBatch:
    """One record batch -> vectors and the text columns asked for; bad rows dropped and named."""
    from cotembed._pipeline import SampleError

    n = record.num_rows
    names = record.schema.names
    problems: dict[int, str] = {}
    vectors = _vectors(record.column("embedding"), info, part, problems)
    finite = np.isfinite(vectors.sum(axis=1))  # one reduction, no (rows, dim) mask: a NaN or inf anywhere makes the sum non-finite
    if not finite.all():
        for bad in np.flatnonzero(~finite):
            if not np.isfinite(vectors[bad]).all():
                problems.setdefault(int(bad), f"{part.path.name}: vector has NaN or infinite values")
    if "model_key" in names:
        others = _other_models(record.column("model_key"), info.model_key)
        if others is not None:
            keys = record.column("model_key").to_pylist()
            for other in others:
                problems.setdefault(int(other), f"{part.path.name}: row of model {keys[other]!r}, dataset of {info.model_key!r}")
    hashes = _texts(record, "content_hash", (*wanted, "content_hash") if problems else wanted)
    read_sources = _texts(record, "source", wanted)
    raw_sources = read_sources or (part.sources() if problems else [])

    def source(row: int) -> str:
        found = raw_sources[row] if raw_sources else None
        return found if found is not None else f"{part.path.name}:{hashes[row] if hashes else part.first + row}"

    sources = [source(i) for i in range(n)] if "source" in wanted else []
    labels = _texts(record, "label", wanted)
    kinds = [k or "image" for k in _texts(record, "kind", wanted)]
    errors = [SampleError(source(row), why) for row, why in sorted(problems.items())]
    if problems:
        keep = np.ones(n, dtype=bool)
        keep[list(problems)] = False
        rows = np.flatnonzero(keep)

        def pick(values: list[Any]) -> list[Any]:
            return [values[i] for i in rows] if values else values

        return EmbeddingBatch(pick(sources), pick(labels), pick(hashes) if "content_hash" in wanted else [], vectors[rows], errors, pick(kinds))
    return EmbeddingBatch(sources, labels, hashes, vectors, errors, kinds)


def read_embedding_set(directory: str | Path, model_key: str | None = None) -> "EmbeddingSet":
    """The whole dataset as an :class:`~cotembed._embeddings.EmbeddingSet` (unit vectors), bad rows as errors."""
    from cotembed._embeddings import EmbeddingSet
    from cotembed.scoring._functions import l2_normalize

    info = read_info(directory)
    chunks: list[np.ndarray] = []
    sources: list[str] = []
    labels: list[str | None] = []
    errors: list[Any] = []
    for batch in iter_batches(directory, model_key):
        sources.extend(batch.sources)
        labels.extend(batch.labels)
        errors.extend(batch.errors)
        chunks.append(batch.embeddings)
    assert info is not None  # iter_batches refused a folder without one
    embeddings = l2_normalize(np.concatenate(chunks)) if chunks else np.zeros((0, info.dim), dtype=np.float32)
    return EmbeddingSet(embeddings=embeddings, sources=sources, labels=labels, model_key=info.model_key, errors=errors)


def read_info_or_fail(directory: str | Path) -> DatasetInfo:
    info = read_info(directory)
    if info is None:
        raise InputError(f"--embeddings {directory}: no {METADATA_FILE} (write one with `cotembed embed DATA --out DIR`)")
    return info


# ------------------------------------------------------------ SQLite cache <-> Parquet
def export_cache(cache: Any, directory: str | Path, model_key: str, kind: str | None = None) -> int:
    """Copy a model's vectors from the SQLite cache into a dataset (as stored).

    Rows carry the content hash as key; source and label are unknown to the cache.
    Returns the rows written (hashes the dataset already holds are skipped).
    """
    writer: EmbeddingWriter | None = None
    try:
        for row_kind, key, vector in cache.iter_vectors(model_key, kind):
            if writer is None:
                writer = EmbeddingWriter(directory, model_key, len(vector))
            if key in writer.done:
                continue
            writer.add([None], [None], [row_kind], [key], vector[None, :])
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise InputError(f"cache {getattr(cache, 'path', '')}: no embeddings of model {model_key!r}")
    return writer.n_written


def import_cache(cache: Any, directory: str | Path, batch_rows: int = 4096) -> tuple[int, list["SampleError"]]:
    """Copy a dataset's vectors into the SQLite cache under its model key; returns (rows, rows skipped)."""
    info = read_info_or_fail(directory)
    n = 0
    errors: list[Any] = []
    for batch in iter_batches(directory, batch_rows=batch_rows):
        errors.extend(batch.errors)
        by_kind: dict[str, dict[str, np.ndarray]] = {}
        for h, vec, kind in zip(batch.hashes, batch.embeddings, batch.kinds):
            by_kind.setdefault(kind, {})[h] = np.array(vec)
        for kind, items in by_kind.items():
            cache.put_many(info.model_key, kind, items)
        n += len(batch.hashes)
    return n, errors
