"""Atomic file writes: a file the project writes is either the old one or the whole new one.

A crash, a full disk or a failed check half-way through never leaves a
truncated system, report or manifest behind: the bytes go to a temporary file
in the same folder (so the final rename never crosses file systems), are
flushed to disk, optionally checked, and only then renamed over the target
with :func:`os.replace`, which is atomic on POSIX and Windows.
"""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


def temporary_sibling(path: Path) -> Path:
    """A fresh hidden name beside ``path`` that keeps its suffix (readers pick the format by it)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that writes files itself (an image
    encoder, a download); when the block ends without an exception the file is flushed to
    disk and renamed over ``path``. On any exception ``path`` is untouched and the temporary
    file removed. An existing ``path`` keeps its permission bits.
    """
    target = Path(path)
    tmp = temporary_sibling(target)
    try:
        yield tmp
        _fsync(tmp)
        if target.exists():
            shutil.copymode(target, tmp)
        os.replace(tmp, target)
        _fsync_folder(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike[str], data: str | bytes, *, check: Callable[[Path], None] | None = None) -> int:
    """Write ``data`` (text as UTF-8) to ``path`` atomically and return the number of bytes.

    ``check`` receives the written temporary file before the rename and raises to
    refuse it (e.g. "does not load back the same"); then nothing is written. OSError
    propagates for the caller to name the flag or file it came from.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        with open(tmp, "xb") as fh:
            fh.write(payload)
        if check is not None:
            check(tmp)
    return len(payload)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows it (not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["atomic_path", "atomic_write", "temporary_sibling"]
