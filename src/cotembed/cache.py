"""On-disk embedding cache (SQLite), keyed by model key + content key.

Images are keyed by the SHA-256 of their file bytes and texts by the SHA-256 of
the text, so renaming a file or re-running on the same folder encodes nothing.
Each batch is committed as soon as it is encoded: a run killed half way keeps
every finished batch. WAL mode lets several readers share the file safely.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, Self

import numpy as np

from cotembed.errors import CotembedError

Kind = str  # "image" or "text"


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

    def get_model_info(self, model_key: str) -> dict | None: ...

    def put_model_info(self, model_key: str, info: dict) -> None: ...


class NoCache:
    """Stands in for the cache under ``--no-cache``: remembers nothing."""

    path = None

    def get_many(self, model_key: str, kind: Kind, keys: Sequence[str]) -> dict[str, np.ndarray]:
        return {}

    def put_many(self, model_key: str, kind: Kind, items: Mapping[str, np.ndarray]) -> None:
        return None

    def get_model_info(self, model_key: str) -> dict | None:
        return None

    def put_model_info(self, model_key: str, info: dict) -> None:
        return None

    def close(self) -> None:
        return None


class EmbeddingCache:
    """SQLite-backed store of float32 vectors. Safe to share between threads."""

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

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(self._SCHEMA)
            self._conn.commit()
        except (OSError, sqlite3.Error) as exc:
            raise CotembedError(f"cannot open embedding cache {self.path}: {exc} (use --cache PATH or --no-cache)") from exc
        self._lock = threading.Lock()

    def get_many(self, model_key: str, kind: Kind, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), self._CHUNK):
                chunk = unique[start : start + self._CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, dim, vector FROM embeddings WHERE model_key=? AND kind=? AND key IN ({marks})",
                    (model_key, kind, *chunk),
                ).fetchall()
                for key, dim, blob in rows:
                    vec = np.frombuffer(blob, dtype=np.float32)
                    if vec.shape[0] == dim:
                        found[key] = vec
        return found

    def put_many(self, model_key: str, kind: Kind, items: Mapping[str, np.ndarray]) -> None:
        rows = [
            (model_key, kind, key, int(vec.shape[-1]), np.ascontiguousarray(vec, dtype=np.float32).tobytes())
            for key, vec in items.items()
        ]
        with self._lock:
            self._conn.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?)", rows)
            self._conn.commit()

    def get_model_info(self, model_key: str) -> dict | None:
        """Facts about a model (dim, modalities, ...) saved so it need not be loaded to know them."""
        with self._lock:
            row = self._conn.execute("SELECT info FROM model_info WHERE model_key=?", (model_key,)).fetchone()
        if row is None:
            return None
        try:
            info = json.loads(row[0])
        except ValueError:
            return None
        return info if isinstance(info, dict) else None

    def put_model_info(self, model_key: str, info: dict) -> None:
        payload = json.dumps(info, sort_keys=True)
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO model_info VALUES (?, ?)", (model_key, payload))
            self._conn.commit()

    def count(self, model_key: str | None = None) -> int:
        with self._lock:
            if model_key is None:
                return self._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
            return self._conn.execute("SELECT COUNT(*) FROM embeddings WHERE model_key=?", (model_key,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_cache(path: str | Path | None = None, enabled: bool = True) -> EmbeddingCache | NoCache:
    """The store the CLI flags ask for: ``--cache PATH`` or ``--no-cache``."""
    return EmbeddingCache(path) if enabled else NoCache()
