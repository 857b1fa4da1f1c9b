"""Real-data tasks built from installed public sources: a small slice of each, built for real (not skipped)."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from cotembed.data import collect_samples, resolve_labels
from cotembed.system import System
from cotembed_experiments.datasets import build, task_names
from cotembed_experiments.datasets.sources import DebianSource, SourceMissingError
from support import run_cli

ROOT = Path(__file__).resolve().parents[1]
PER_CLASS = 3


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("realdata")
    for name in task_names():
        build(name, out, per_class=PER_CLASS)  # installs the Debian package when missing and allowed
    return out


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("name", ["plant-families", "emoji-subgroups"])
def test_slice_is_balanced_labelled_and_described(slices: Path, name: str) -> None:
    rows = read_rows(slices / name / "data.csv")
    manifest = json.loads((slices / name / "manifest.json").read_text(encoding="utf-8"))
    labels = {r["label"] for r in rows}
    assert len(labels) >= 16 and all(sum(r["label"] == label for r in rows) == PER_CLASS for label in labels)
    assert all(r["text"].strip() for r in rows) and len({r["id"] for r in rows}) == len(rows)
    assert manifest["output"]["sha256"] == hashlib.sha256((slices / name / "data.csv").read_bytes()).hexdigest()
    (source,) = manifest["sources"]
    assert source["version"] and all(len(digest) == 64 for digest in source["files"].values())
    assert manifest["classes"] == {label: PER_CLASS for label in sorted(labels)}


@pytest.mark.parametrize("name", ["plant-families", "emoji-subgroups"])
def test_every_label_is_a_class_of_the_hand_written_system(slices: Path, name: str) -> None:
    system = System.load(ROOT / "examples" / name / "system.yaml")
    samples, skipped = resolve_labels(collect_samples([slices / name / "data.csv"]), system.resolve_label)
    assert not skipped and {s.label for s in samples} == set(system.class_names)


def test_builds_are_reproducible_and_the_seed_matters(slices: Path, tmp_path: Path) -> None:
    again = build("emoji-subgroups", tmp_path / "a", per_class=PER_CLASS)
    other = build("emoji-subgroups", tmp_path / "b", per_class=PER_CLASS, seed=1)
    assert again.csv_path.read_bytes() == (slices / "emoji-subgroups" / "data.csv").read_bytes()
    assert other.csv_path.read_bytes() != again.csv_path.read_bytes()


def test_plant_texts_are_glosses_without_examples_or_bare_genus_lines(slices: Path) -> None:
    rows = read_rows(slices / "plant-families" / "data.csv")
    assert not any('"' in r["text"] for r in rows)
    assert all(len(r["text"].split()) >= 6 for r in rows)


def test_missing_source_says_what_to_install() -> None:
    source = DebianSource("no-such-package", ("/nonexistent/cotembed/file.txt",), "")
    with pytest.raises(SourceMissingError, match="apt-get install no-such-package") as info:
        source.ensure(install=False)
    assert info.value.exit_code == 2 and "/nonexistent/cotembed/file.txt" in str(info.value)


def test_cli_builds_and_rejects_unknown_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "datasets", "build", "plant-families", "--out", tmp_path, "--per-class", "2", "--format", "json")
    (built,) = json.loads(out)["built"]
    assert code == 0 and built["rows"] == 2 * built["classes"] and Path(built["manifest"]).is_file()
    code, _, err = run_cli(capsys, "datasets", "build", "no-such-task", "--out", tmp_path)
    assert code == 2 and "plant-families" in err
    code, out, _ = run_cli(capsys, "datasets", "list", "--format", "json")
    assert {d["regime"] for d in json.loads(out)["datasets"]} == {"unknown names", "well-known names"}


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs the onnx extra")
def test_eval_compares_models_in_one_table(slices: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "eval", ROOT / "examples" / "emoji-subgroups" / "system.yaml",
                           slices / "emoji-subgroups" / "data.csv", "--model", "minilm-int8", "--model", "minilm-l3",
                           "--methods", "baseline,cot,hybrid,ensemble", "--cache", tmp_path / "c.sqlite", "-q")
    assert code == 0
    summary = out[out.index("top-1 accuracy, system emoji-subgroups"):]
    rows = [line for line in summary.splitlines() if line.startswith("onnx:minilm-")]
    assert len(rows) == 4  # two models, in the accuracy table and in the question table
    assert summary.splitlines()[1].split() == ["model", "baseline", "cot", "hybrid", "ensemble"]
    assert "chance: 5.6%" in summary and "question accuracy" in summary
