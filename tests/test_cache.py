"""The embedding cache in trouble: damaged files, read-only storage, model facts."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import numpy as np
import pytest

from cotembed.cache import EmbeddingCache, NoCache, open_cache
from cotembed.errors import CacheCorruptError

PAGE = 4096


def filled_cache(path: Path, n: int = 1500, dim: int = 64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    vectors = {f"k{i:05d}": rng.normal(size=dim).astype(np.float32) for i in range(n)}
    with EmbeddingCache(path) as cache:
        cache.put_many("m", "image", vectors)
    return vectors


def damage_middle_pages(path: Path, pages: int = 6) -> bytes:
    """Overwrite the headers of a few pages in the middle of the file, as a torn write would."""
    data = bytearray(path.read_bytes())
    n_pages = len(data) // PAGE
    assert n_pages > 4 * pages, "the test cache is too small to damage only its middle"
    for page in range(n_pages // 2 - pages // 2, n_pages // 2 + pages // 2 + 1):
        data[page * PAGE : page * PAGE + 64] = b"\xa5" * 64
    path.write_bytes(bytes(data))
    return bytes(data)


def corrupt_copies(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(path.name + ".corrupt-") and not p.name.endswith(("-wal", "-shm")))


def test_model_info_round_trip_and_nocache(tmp_path):
    path = tmp_path / "c.sqlite"
    with EmbeddingCache(path) as cache:
        assert cache.get_model_info("hf:x") is None
        cache.put_model_info("hf:x", {"dim": 512, "modalities": ["image", "text"], "input_size": 224})
        cache.put_model_info("hf:x", {"dim": 768})  # replaced, not merged
    with EmbeddingCache(path) as cache:
        assert cache.get_model_info("hf:x") == {"dim": 768}
        assert cache.get_model_info("hf:y") is None
    assert NoCache().get_model_info("hf:x") is None
    NoCache().put_model_info("hf:x", {"dim": 1})


def test_damaged_pages_are_reported_on_open_naming_the_file(tmp_path):
    path = tmp_path / "cache.sqlite"
    filled_cache(path)
    damaged = damage_middle_pages(path)
    with pytest.raises(CacheCorruptError) as info:
        EmbeddingCache(path)
    message = str(info.value)
    assert str(path) in message and "--cache-recover" in message and "--no-cache" in message
    assert path.read_bytes() == damaged and not corrupt_copies(path)  # nothing moved or rewritten without asking


def test_damage_found_while_reading_is_reported_too(tmp_path):
    path = tmp_path / "cache.sqlite"
    vectors = filled_cache(path)
    damage_middle_pages(path)
    cache = EmbeddingCache(path, check=False)  # as for a file too large to check on open
    with pytest.raises(CacheCorruptError, match="cache.sqlite is corrupt"):
        cache.get_many("m", "image", list(vectors))
    cache.close()


def test_recover_moves_the_damaged_file_aside_and_starts_fresh(tmp_path, capsys):
    path = tmp_path / "cache.sqlite"
    filled_cache(path)
    damaged = damage_middle_pages(path)
    cache = open_cache(path, recover=True)
    assert isinstance(cache, EmbeddingCache)
    [moved] = corrupt_copies(path)
    assert moved.read_bytes() == damaged and cache.moved_to == moved  # kept byte for byte, never deleted
    err = capsys.readouterr().err
    assert str(path) in err and str(moved) in err and "fresh cache" in err
    assert cache.count() == 0
    cache.put_many("m", "image", {"a": np.ones(4, dtype=np.float32)})
    np.testing.assert_array_equal(cache.get_many("m", "image", ["a"])["a"], np.ones(4, dtype=np.float32))
    cache.close()
    assert EmbeddingCache(path).count() == 1


def test_recover_during_a_run_answers_from_a_fresh_cache(tmp_path, capsys):
    path = tmp_path / "cache.sqlite"
    vectors = filled_cache(path)
    damage_middle_pages(path)
    cache = EmbeddingCache(path, check=False, recover=True)
    assert cache.get_many("m", "image", list(vectors)) == {}  # a miss: the run re-encodes
    assert len(corrupt_copies(path)) == 1 and "moved it to" in capsys.readouterr().err
    cache.put_many("m", "image", {"k00000": vectors["k00000"]})
    assert cache.count() == 1
    cache.close()


def test_a_file_that_is_not_a_database_is_reported(tmp_path):
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"this is not SQLite" * 500)
    with pytest.raises(CacheCorruptError, match="not a database"):
        open_cache(path)
    cache = open_cache(path, recover=True)
    assert cache.count() == 0 and len(corrupt_copies(path)) == 1
    cache.close()


def test_readonly_cache_serves_reads_and_skips_writes_with_one_warning(tmp_path, capsys, monkeypatch):
    path = tmp_path / "cache.sqlite"
    vectors = filled_cache(path, n=20)
    before = path.read_bytes()
    monkeypatch.setenv("COTEMBED_CACHE_READONLY", "1")
    cache = open_cache(path)
    assert cache.readonly
    got = cache.get_many("m", "image", list(vectors))
    assert len(got) == 20 and all(np.array_equal(got[k], v) for k, v in vectors.items())
    for i in range(3):
        cache.put_many("m", "image", {f"new{i}": np.ones(64, dtype=np.float32)})
    cache.put_model_info("m", {"dim": 64})
    assert cache.count() == 20 and cache.get_model_info("m") is None
    err = capsys.readouterr().err
    assert err.count("not stored") == 1 and str(path) in err and "COTEMBED_CACHE_READONLY" in err
    cache.close()
    assert path.read_bytes() == before


def test_readonly_open_of_a_cache_written_before_model_info_existed(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE embeddings (model_key TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, "
                 "dim INTEGER NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model_key, kind, key)) WITHOUT ROWID")
    conn.execute("INSERT INTO embeddings VALUES ('m', 'text', 'k', 2, ?)", (np.ones(2, dtype=np.float32).tobytes(),))
    conn.commit()
    conn.close()
    cache = EmbeddingCache(path, readonly=True)
    assert cache.get_model_info("m") is None and len(cache.get_many("m", "text", ["k"])) == 1
    cache.close()


def _run_unprivileged(fn) -> dict:
    """Run ``fn`` in a forked child that dropped root, so file permissions really apply."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            result = fn()
        except BaseException as exc:  # reported to the parent
            result, code = {"error": f"{type(exc).__name__}: {exc}"}, 1
        with os.fdopen(write, "w") as fh:
            json.dump(result, fh)
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as fh:
        payload = fh.read()
    os.waitpid(pid, 0)
    return json.loads(payload)


@pytest.fixture
def open_tmp():
    """A temporary folder every user can reach (pytest's own is private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="cotembed-ro-"))
    path.chmod(0o755)
    yield path
    for p in [path, *path.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    shutil.rmtree(path)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork to drop privileges")
def test_cache_on_storage_that_refuses_writes_opens_readonly_by_itself(open_tmp):
    folder = open_tmp / "ro"
    path = folder / "cache.sqlite"
    vectors = filled_cache(path, n=30)
    before = path.read_bytes()
    assert not Path(str(path) + "-wal").exists()  # closed cleanly: only the main file is left
    folder.chmod(0o555)
    path.chmod(0o444)

    def child() -> dict:
        import io
        import sys

        if os.access(folder, os.W_OK):
            return {"skip": "cannot drop write permission here"}
        sys.stderr = io.StringIO()
        cache = open_cache(path)
        found = cache.get_many("m", "image", list(vectors))
        cache.put_many("m", "image", {"new": np.ones(64, dtype=np.float32)})
        cache.put_many("m", "image", {"new2": np.ones(64, dtype=np.float32)})
        out = {"readonly": cache.readonly, "found": len(found), "count": cache.count(),
               "same": all(np.array_equal(found[k], v) for k, v in vectors.items()), "err": sys.stderr.getvalue()}
        cache.close()
        return out

    try:
        result = _run_unprivileged(child)
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
    if "skip" in result:
        pytest.skip(result["skip"])
    assert "error" not in result, result.get("error")
    assert result["readonly"] and result["found"] == 30 and result["same"] and result["count"] == 30
    assert result["err"].count("not stored") == 1 and "not writable" in result["err"]
    assert path.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["cache.sqlite"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork to drop privileges")
def test_missing_cache_in_a_folder_that_refuses_writes_is_a_clear_error(open_tmp):
    folder = open_tmp / "ro"
    folder.mkdir()
    folder.chmod(0o555)

    def child() -> dict:
        if os.access(folder, os.W_OK):
            return {"skip": "cannot drop write permission here"}
        try:
            open_cache(folder / "cache.sqlite")
        except Exception as exc:
            return {"type": type(exc).__name__, "message": str(exc)}
        return {"type": None}

    try:
        result = _run_unprivileged(child)
    finally:
        folder.chmod(0o755)
    if "skip" in result:
        pytest.skip(result["skip"])
    assert result["type"] == "CotembedError"
    assert str(folder / "cache.sqlite") in result["message"] and "--no-cache" in result["message"]
