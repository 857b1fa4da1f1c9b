"""benchmarks/run_all.py keeps the sections it does not rerun, whatever their output prints."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_headings_printed_inside_a_section_output_do_not_split_it(tmp_path: Path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n## Speed\n\n```\n## a heading the script printed\nfigures\n```\n\n## Memory\n\ntext\n",
                   encoding="utf-8")
    sections = _run_all().existing_sections(doc)
    assert list(sections) == ["Speed", "Memory"]
    assert "## a heading the script printed\nfigures" in sections["Speed"]
