"""On-disk embedding cache (SQLite), keyed by model key + content key.

Images are keyed by the SHA-256 of their bytes (a file's, or an upload's: the same
key) with the pipeline's decoding version (:func:`cotembed._pipeline.image_key`), and
texts by the SHA-256 of the text, so renaming a file or re-running on the same folder
encodes nothing.
Each batch is committed as soon as it is encoded: a run killed half way keeps
every finished batch. WAL mode lets several readers share the file safely.

A cache is a convenience, never the only copy of anything, so its troubles are
handled rather than fatal where that is safe:

* a damaged file (torn write, bad disk) is detected on open (``PRAGMA quick_check``
  for files up to :data:`CHECK_ON_OPEN_MAX_BYTES`) and on every read, and raises
  :class:`CacheCorruptError` naming the file; ``open_cache(path, recover=True)``
  (``--cache-recover``) moves it aside as ``<name>.corrupt-<timestamp>`` (never
  deleting it) and starts a fresh cache;
* a cache on read-only storage (or ``readonly=True`` / ``COTEMBED_CACHE_READONLY=1``)
  opens read-only: stored embeddings are used, new ones are not stored (one warning).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import quote

import numpy as np

from cotembed.errors import CacheCorruptError, CotembedError

if TYPE_CHECKING:
    from typing_extensions import Self

Kind = str  # "image" or "text"
T = TypeVar("T")

READONLY_ENV = "COTEMBED_CACHE_READONLY"
CHECK_ON_OPEN_MAX_BYTES = 1 << 30
"""Files up to this size get a full ``quick_check`` on open (about 0.3 s per 500 MB from
the page cache); larger ones are checked as they are read, page by page."""


def default_cache_path() -> Path:
    """``$COTEMBED_CACHE`` or ``$XDG_CACHE_HOME/cotembed/embeddings.sqlite``."""
    env = os.environ.get("COTEMBED_CACHE")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "cotembed" / "embeddings.sqlite"


def content_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingStore(Protocol):
    def get_many(self, model_key: str, kind: Kind, keys: Sequence[str]) -> dict[str, np.ndarray]: ...

    def put_many(self, model_key: str, kind: Kind, items: Mapping[str, np.ndarray]) -> None: ...

    def get_model_info(self, model_key: str) -> dict[str, Any] | None: ...

    def put_model_info(self, model_key: str, info: dict[str, Any]) -> None: ...


class NoCache:
    """Stands in for the cache under ``--no-cache``: remembers nothing."""

    path = None
    readonly = False

    def get_many(self, model_key: str, kind: Kind, keys: Sequence[str]) -> dict[str, np.ndarray]:
        return {}

    def put_many(self, model_key: str, kind: Kind, items: Mapping[str, np.ndarray]) -> None:
        return None

    def get_model_info(self, model_key: str) -> dict[str, Any] | None:
        return None

    def put_model_info(self, model_key: str, info: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None


def _say(message: str) -> None:
    print(f"cotembed: {message}", file=sys.stderr, flush=True)


def _error_name(exc: sqlite3.Error) -> str:
    """SQLite's error code name (Python >= 3.11), or one guessed from the message."""
    name = getattr(exc, "sqlite_errorname", None)
    if name:
        return str(name)
    text = str(exc).lower()
    guesses = {"malformed": "SQLITE_CORRUPT", "not a database": "SQLITE_NOTADB",
               "readonly": "SQLITE_READONLY", "unable to open": "SQLITE_CANTOPEN"}
    return next((code for phrase, code in guesses.items() if phrase in text), "SQLITE_ERROR")


def _is_corrupt(exc: sqlite3.Error) -> bool:
    return _error_name(exc).startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def _is_unwritable(exc: BaseException) -> bool:
    """Errors that mean 'this storage refuses writes' rather than 'this data is bad'."""
    if isinstance(exc, PermissionError):
        return True
    if isinstance(exc, OSError):
        import errno

        return exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    if isinstance(exc, sqlite3.Error):
        return _error_name(exc).startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH"))
    return False


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


class EmbeddingCache:
    """SQLite-backed store of float32 vectors. Safe to share between threads.

    ``readonly``: open with ``mode=ro`` and never write (default: ``$COTEMBED_CACHE_READONLY``,
    or automatically when the file or its folder refuses writes). ``recover``: a corrupt
    file is moved aside and replaced by an empty cache instead of raising
    :class:`CacheCorruptError`. ``check``: run ``quick_check`` on open (default: for files
    up to :data:`CHECK_ON_OPEN_MAX_BYTES`).
    """

    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS embeddings (
        model_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        dim INTEGER NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (model_key, kind, key)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS model_info (
        model_key TEXT PRIMARY KEY,
        info TEXT NOT NULL
    ) WITHOUT ROWID;
    """
    _CHUNK = 500  # stay under SQLite's bound-parameter limit

    def __init__(self, path: str | Path | None = None, *, readonly: bool | None = None,
                 recover: bool = False, check: bool | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self.readonly = _env_flag(READONLY_ENV) if readonly is None else bool(readonly)
        self.recover = recover
        self.moved_to: Path | None = None
        """Where a corrupt file was moved by recovery, if it was."""
        self._readonly_reason = f"asked for: readonly=True or {READONLY_ENV}=1"
        self._warned_readonly = False
        self._lock = threading.Lock()
        self._conn = self._connect()
        if check if check is not None else self._size() <= CHECK_ON_OPEN_MAX_BYTES:
            problem = self._quick_check()
            if problem is not None:
                self._corrupt(problem)

    # -- opening ---------------------------------------------------------------------------

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def _connect(self) -> sqlite3.Connection:
        if not self.readonly:
            if self.path.exists() and not (os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK)):
                self.readonly = True  # the OS says so up front; do not even try to write
                self._readonly_reason = "its file or folder is not writable"
            else:
                try:
                    return self._connect_writable()
                except (OSError, sqlite3.Error) as exc:
                    if isinstance(exc, sqlite3.Error) and _is_corrupt(exc):
                        return self._corrupt_on_open(exc)
                    if not (_is_unwritable(exc) and self.path.is_file()):
                        raise CotembedError(
                            f"cannot open embedding cache {self.path}: {exc} (use --cache PATH or --no-cache)"
                        ) from exc
                    self.readonly = True
                    self._readonly_reason = f"opening it for writing failed: {exc}"
        try:
            return self._connect_readonly()
        except sqlite3.Error as exc:
            if _is_corrupt(exc):
                return self._corrupt_on_open(exc)
            raise CotembedError(f"cannot open embedding cache {self.path} read-only: {exc} (use --no-cache)") from exc

    def _connect_writable(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(self._SCHEMA)
            conn.commit()
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        """``mode=ro``; if even that cannot work (a WAL file on storage where the ``-shm``
        index cannot be created), ``immutable=1``: nobody can write there anyway."""
        if not self.path.is_file():
            raise sqlite3.OperationalError(f"unable to open database file {self.path} (not found)")
        uri = "file:" + quote(str(self.path.resolve()))
        last: sqlite3.Error | None = None
        for params in ("mode=ro", "mode=ro&immutable=1"):
            conn = sqlite3.connect(f"{uri}?{params}", uri=True, timeout=30.0, check_same_thread=False)
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.Error as exc:
                conn.close()
                if _is_corrupt(exc) or not _is_unwritable(exc):
                    raise
                last = exc
        assert last is not None
        raise last

    def _quick_check(self) -> str | None:
        """None if SQLite's structural check passes, else its first complaint."""
        try:
            with self._lock:
                rows = self._conn.execute("PRAGMA quick_check(1)").fetchall()
        except sqlite3.Error as exc:
            if _is_corrupt(exc):
                return str(exc)
            raise CotembedError(f"cannot check embedding cache {self.path}: {exc}") from exc
        first = str(rows[0][0]) if rows else "ok"
        return None if first == "ok" else first.splitlines()[-1].strip()

    # -- corruption --------------------------------------------------------------------------

    def _corrupt_on_open(self, exc: sqlite3.Error) -> sqlite3.Connection:
        if not self.recover:
            raise CacheCorruptError(self.path, str(exc)) from exc
        self._move_aside(str(exc))
        return self._connect()

    def _corrupt(self, detail: str) -> None:
        """Damage found on an open connection: raise, or move the file aside and reopen."""
        if not self.recover:
            raise CacheCorruptError(self.path, detail)
        self._conn.close()
        self._move_aside(detail)
        self._conn = self._connect()

    def _move_aside(self, detail: str) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            self.path.rename(target)
            for suffix in ("-wal", "-shm"):  # SQLite finds them again next to the moved file
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    side.rename(target.with_name(target.name + suffix))
        except OSError as exc:
            raise CotembedError(
                f"embedding cache {self.path} is corrupt ({detail}) and could not be moved aside: "
                f"{exc.strerror or exc}; use --no-cache or --cache OTHER_PATH"
            ) from exc
        self.moved_to = target
        self.readonly = False
        _say(f"embedding cache {self.path} was corrupt ({detail}); moved it to {target} and started a fresh cache")

    # -- reading and writing -------------------------------------------------------------------

    def _run(self, op: Callable[[sqlite3.Connection], T], fallback: T, write: bool) -> T:
        """Run one locked operation; turn SQLite's failures into cotembed's answers."""
        if write and self.readonly:
            self._skip_write(self._readonly_reason)
            return fallback
        conn = self._conn
        try:
            with self._lock:
                return op(conn)
        except sqlite3.Error as exc:
            if _is_corrupt(exc):
                with self._lock:
                    if self._conn is conn:  # another thread may have recovered already
                        self._corrupt(str(exc))
                return self._run(op, fallback, write)  # a fresh, empty cache after recovery
            if write and _is_unwritable(exc):
                self.readonly = True
                self._readonly_reason = f"writing failed: {exc}"
                self._skip_write(self._readonly_reason)
                return fallback
            raise CotembedError(f"embedding cache {self.path}: {exc}") from exc

    def _skip_write(self, reason: str) -> None:
        if not self._warned_readonly:
            self._warned_readonly = True
            _say(f"embedding cache {self.path} is read-only ({reason}); stored embeddings are used, "
                 "new ones are not stored, so they are computed again next time")

    def get_many(self, model_key: str, kind: Kind, keys: Sequence[str]) -> dict[str, np.ndarray]:
        unique = list(dict.fromkeys(keys))

        def op(conn: sqlite3.Connection) -> dict[str, np.ndarray]:
            found: dict[str, np.ndarray] = {}
            for start in range(0, len(unique), self._CHUNK):
                chunk = unique[start : start + self._CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT key, dim, vector FROM embeddings WHERE model_key=? AND kind=? AND key IN ({marks})",
                    (model_key, kind, *chunk),
                ).fetchall()
                for key, dim, blob in rows:
                    vec = np.frombuffer(blob, dtype=np.float32)
                    if vec.shape[0] == dim and np.isfinite(vec).all():
                        found[key] = vec
            return found

        return self._run(op, {}, write=False) if unique else {}

    def put_many(self, model_key: str, kind: Kind, items: Mapping[str, np.ndarray]) -> None:
        rows = [
            (model_key, kind, key, int(vec.shape[-1]), np.ascontiguousarray(vec, dtype=np.float32).tobytes())
            for key, vec in items.items()
        ]

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?)", rows)
            conn.commit()

        if rows:
            self._run(op, None, write=True)

    def get_model_info(self, model_key: str) -> dict[str, Any] | None:
        """Facts about a model (dim, modalities, ...) saved so it need not be loaded to know them."""

        def op(conn: sqlite3.Connection) -> dict[str, Any] | None:
            try:
                row = conn.execute("SELECT info FROM model_info WHERE model_key=?", (model_key,)).fetchone()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):  # an older cache opened read-only
                    return None
                raise
            if row is None:
                return None
            try:
                info = json.loads(row[0])
            except ValueError:
                return None
            return info if isinstance(info, dict) else None

        return self._run(op, None, write=False)

    def put_model_info(self, model_key: str, info: dict[str, Any]) -> None:
        payload = json.dumps(info, sort_keys=True)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO model_info VALUES (?, ?)", (model_key, payload))
            conn.commit()

        self._run(op, None, write=True)

    def iter_vectors(self, model_key: str, kind: Kind | None = None) -> Iterator[tuple[str, str, np.ndarray]]:
        """(kind, key, vector) of every usable vector of a model, for exporting the cache."""

        def op(conn: sqlite3.Connection) -> list[tuple[str, str, int, bytes]]:
            if kind is None:
                return conn.execute("SELECT kind, key, dim, vector FROM embeddings WHERE model_key=? ORDER BY kind, key", (model_key,)).fetchall()
            return conn.execute("SELECT kind, key, dim, vector FROM embeddings WHERE model_key=? AND kind=? ORDER BY key", (model_key, kind)).fetchall()

        found: list[tuple[str, str, int, bytes]] = self._run(op, [], write=False)
        for row_kind, key, dim, blob in found:
            vec = np.frombuffer(blob, dtype=np.float32)
            if vec.shape[0] == dim and np.isfinite(vec).all():
                yield row_kind, key, vec

    def count(self, model_key: str | None = None) -> int:
        def op(conn: sqlite3.Connection) -> int:
            if model_key is None:
                return int(conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])
            return int(conn.execute("SELECT COUNT(*) FROM embeddings WHERE model_key=?", (model_key,)).fetchone()[0])

        return self._run(op, 0, write=False)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_cache(path: str | Path | None = None, enabled: bool = True, *, recover: bool = False,
               readonly: bool | None = None) -> EmbeddingCache | NoCache:
    """The store the CLI flags ask for: ``--cache PATH``, ``--no-cache``, ``--cache-recover``
    (move a corrupt file aside and start afresh); read-only storage opens read-only."""
    return EmbeddingCache(path, readonly=readonly, recover=recover) if enabled else NoCache()
