"""Atomic writes: a file the project writes is the old one or the whole new one, never a half."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cotembed._io import atomic_path, atomic_write
from cotembed.errors import CotembedError
from cotembed.system import System

SYSTEM = {"groups": {"colour": {"prompt": "a {} thing", "options": ["red", "blue"]}},
          "rules": {"Apple": {"colour": "red"}, "Sky": {"colour": "blue"}}}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_atomic_write_replaces_and_keeps_the_mode(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    assert atomic_write(out, "é\n") == 3 and out.read_text(encoding="utf-8") == "é\n"
    assert (out.stat().st_mode & 0o777) == 0o666 & ~_umask()  # a new file: the usual mode, not a temp file's 0600
    os.chmod(out, 0o640)
    atomic_write(out, b"new")
    assert out.read_bytes() == b"new" and (out.stat().st_mode & 0o777) == 0o640 and leftovers(tmp_path) == []


def test_a_failed_write_or_check_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out.txt"
    out.write_text("old", encoding="utf-8")

    def refuse(written: Path) -> None:
        assert written.read_text(encoding="utf-8") == "new" and written.parent == out.parent
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        atomic_write(out, "new", check=refuse)
    monkeypatch.setattr(os, "replace", lambda *_: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError, match="No space"):
        atomic_write(out, "new")
    with pytest.raises(OSError, match="No space"), atomic_path(out) as tmp:
        tmp.write_text("new", encoding="utf-8")
    assert out.read_text(encoding="utf-8") == "old" and leftovers(tmp_path) == []


def test_system_save_is_atomic_and_can_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = System.from_dict(SYSTEM)
    out = tmp_path / "s.yaml"
    out.write_text("# hand-written\n", encoding="utf-8")
    monkeypatch.setattr(os, "replace", lambda *_: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError):
        system.save(out)
    assert out.read_text(encoding="utf-8") == "# hand-written\n" and leftovers(tmp_path) == []
    monkeypatch.undo()
    system.save(out, "# drafted\n", verify=True)
    assert out.read_text(encoding="utf-8").startswith("# drafted\n") and System.load(out) == system
    system.save(tmp_path / "s.json", "# no comments in JSON\n")
    assert System.load(tmp_path / "s.json") == system


def test_system_save_refuses_what_does_not_read_back(tmp_path: Path) -> None:
    out = tmp_path / "s.yaml"
    with pytest.raises(CotembedError, match="did not read back the same"):
        System.from_dict(SYSTEM).save(out, "temperature: 3\n", verify=True)  # a header that is not a comment
    assert not out.exists() and leftovers(tmp_path) == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
