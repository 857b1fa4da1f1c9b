"""BENCHMARKS.md holds the measured zoo tables and curves; the README's headline figures are copied from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"

pytestmark = pytest.mark.skipif(not BENCHMARKS.exists(), reason="BENCHMARKS.md not generated (make benchmarks)")


def zoo_acc1() -> dict[str, dict[str, str]]:
    """split -> method -> the acc1 cell of bench_zoo's table in BENCHMARKS.md."""
    text = BENCHMARKS.read_text(encoding="utf-8")
    out: dict[str, dict[str, str]] = {}
    for split, block in re.findall(r"### (easy|hard): `cotembed eval .*?`\n(.*?)\ncot - random-control", text, re.S):
        rows = re.findall(r"^([a-z-]+)\s+(\d+\.\d\d%(?: ± \d+\.\d\d)?)", block, re.M)
        out[split] = {method: cell.replace("%", "") for method, cell in rows}
    return out


def test_benchmarks_has_both_zoo_tables_and_the_curves():
    measured = zoo_acc1()
    assert set(measured) == {"easy", "hard"}
    for split in measured.values():
        assert {"baseline", "ensemble", "dclip", "cot", "cot-log", "hybrid", "random-control"} <= set(split)
    text = BENCHMARKS.read_text(encoding="utf-8")
    for name in ("curve-easy.png", "curve-hard.png"):
        assert f"](benchmarks/figures/{name})" in text and (ROOT / "benchmarks" / "figures" / name).exists()


def test_readme_headline_figures_are_the_measured_ones():
    measured = zoo_acc1()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([a-z/ -]+?) (?:\(.*?\) )?\| ([\d.± ]+) % \| ([\d.± ]+) % \|$", readme, re.M)
    assert len(rows) >= 5
    for label, easy, hard in rows:
        for method in label.split(" / "):
            assert measured["easy"][method] == easy, (method, easy)
            assert measured["hard"][method] == hard, (method, hard)


def test_rerunning_one_section_keeps_sections_whose_output_has_headings(tmp_path, monkeypatch):
    """A script's output inside ``` may print "## " lines; they are not new sections."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "run_all", run_all)  # its dataclasses look their module up
    spec.loader.exec_module(run_all)
    doc = tmp_path / "B.md"
    doc.write_text("# B\n\n## First\n\n```\n## printed by the script\nfigure 1\n```\n\n## Second\n\nfigure 2\n", encoding="utf-8")
    sections = run_all.existing_sections(doc)
    assert list(sections) == ["First", "Second"]
    assert "## printed by the script\nfigure 1" in sections["First"]
