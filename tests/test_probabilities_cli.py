"""classify / eval / explain with calibrated probabilities, abstention, conformal sets, multi-label and open set,
end to end on generated critters splits with the bundled critters model."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support import run_cli

from cotembed.system import System

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = ROOT / "examples" / "critters" / "system.yaml"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A test split and a calibration split (other seeds, 2 images per species), a split too small for conformal
    calibration (19 images) and a shared embedding cache."""
    from cotembed_critters.species import generate_split

    root = tmp_path_factory.mktemp("probs-cli")
    for name, seed in (("test", 7171), ("cal", 8282)):
        generate_split(ROOT / "examples" / "critters" / "species.yaml", root / name, 2, seed=seed, progress=False)
    small = root / "small"
    for image in sorted((root / "cal").rglob("*.png"))[:19]:
        (small / image.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, small / image.parent.name / image.name)
    return {"root": root, "test": root / "test", "cal": root / "cal", "small": small, "cache": root / "cache.sqlite"}


def cli(capsys: Any, world: dict[str, Path], *argv: Any) -> tuple[int, str, str]:
    return run_cli(capsys, *argv, "--model", "critters", "--cache", world["cache"], "-q")


def test_classify_reports_calibrated_probabilities_and_fit_scores(capsys: Any, world: dict[str, Path]) -> None:
    images = sorted(world["test"].rglob("*.png"))[:4]
    code, out, _ = cli(capsys, world, "classify", SYSTEM, *images, "--format", "json")
    assert code == 0
    payload = json.loads(out)
    assert payload["probabilities"] == "calibrated" and payload["decisions"] == {"fit_score": "log rule support"}
    for p in payload["predictions"]:
        assert p["abstained"] is False and p["fit_score"] <= 0 and 0 < p["probability"] <= 1
        assert p["top"][0]["probability"] == p["probability"]
    code, out, _ = cli(capsys, world, "classify", SYSTEM, *images, "--format", "json", "--probabilities", "normalised")
    old = json.loads(out)
    assert old["probabilities"] == "normalised"
    assert all(o["probability"] < 0.5 < p["probability"] for o, p in zip(old["predictions"], payload["predictions"]))


def test_abstained_inputs_in_table_json_csv_and_jsonl(capsys: Any, world: dict[str, Path], tmp_path: Path) -> None:
    images = sorted(world["test"].rglob("*.png"))[:3]
    for suffix in ("json", "csv", "jsonl"):
        out_file = tmp_path / f"p.{suffix}"
        code, out, _ = cli(capsys, world, "classify", SYSTEM, *images, "--abstain", "0.5", "--output", out_file)
        assert code == 0 and "abstained (" in out and "3 of 3 input(s) abstained" in out
        if suffix == "json":
            rows = json.loads(out_file.read_text())["predictions"]
        elif suffix == "jsonl":
            rows = [json.loads(line) for line in out_file.read_text().splitlines()]
        else:
            rows = list(csv.DictReader(out_file.open(encoding="utf-8")))
        assert len(rows) == 3
        for row in rows:
            assert row["prediction"] in (None, "") and row["abstained"] in (True, "True", "true")
            assert "below the threshold 0.5" in row["reason"]


def test_conformal_sets_in_classify_and_their_coverage_in_eval(capsys: Any, world: dict[str, Path], tmp_path: Path) -> None:
    images = sorted(world["test"].rglob("*.png"))[:3]
    code, out, _ = cli(capsys, world, "classify", SYSTEM, *images, "--conformal", "0.1", "--conformal-data", world["cal"],
                       "--format", "json", "--output", tmp_path / "sets.csv")
    assert code == 0
    payload = json.loads(out)
    conformal = payload["decisions"]["conformal"]
    assert conformal["alpha"] == 0.1 and conformal["n_calibration"] == 56 and conformal["score"] == "lac"
    assert all(isinstance(p["set"], list) for p in payload["predictions"])
    assert all("set" in row for row in csv.DictReader((tmp_path / "sets.csv").open(encoding="utf-8")))
    code, out, _ = cli(capsys, world, "eval", SYSTEM, world["test"], "--methods", "cot,cot-log", "--conformal", "0.1",
                       "--conformal-data", world["cal"], "--format", "json")
    assert code == 0
    section = json.loads(out)["conformal"]
    for method in ("cot", "cot-log"):
        assert section[method]["n_inputs"] == 56 and 0.8 <= section[method]["coverage"] <= 1.0
        assert section[method]["mean_set_size"] > 0


def test_eval_open_set_abstention_and_plots(capsys: Any, world: dict[str, Path], tmp_path: Path) -> None:
    plot = tmp_path / "probs.png"
    code, out, _ = cli(capsys, world, "eval", SYSTEM, world["test"], "--methods", "cot", "--open-set", "6", "--seed", "2",
                       "--abstain-target", "precision=0.95", "--abstain-data", world["cal"], "--plot", plot,
                       "--format", "json")
    assert code == 0
    payload = json.loads(out)
    assert payload["probabilities"] == "calibrated" and payload["methods"]["cot"]["ece"] < 0.1
    open_set = payload["open_set"]["cot"]
    assert open_set["k"] == 6 and open_set["seed"] == 2 and len(open_set["held_out"]) == 6
    assert open_set["auroc"] >= 0.9 and 0 <= open_set["fpr_at_95_tpr"] <= 1
    assert len(open_set["curve"]["coverage"]) == len(open_set["curve"]["accuracy"]) > 2
    abstention = payload["abstention"]["cot"]
    assert abstention["chosen_by"].startswith("precision >= 0.95") and 0 <= abstention["coverage"] <= 1
    assert payload["plots"] == [str(plot), str(plot.with_suffix(".coverage.png"))]
    assert plot.stat().st_size > 0 and plot.with_suffix(".coverage.png").stat().st_size > 0
    code, again, _ = cli(capsys, world, "eval", SYSTEM, world["test"], "--methods", "cot", "--open-set", "6", "--seed", "2",
                         "--format", "json", "--fit-score", "energy")
    energy = json.loads(again)["open_set"]["cot"]
    assert energy["held_out"] == open_set["held_out"]  # seeded
    assert energy["fit_score"] == "energy" and energy["auroc"] >= 0.9


def test_eval_html_shows_the_reliability_and_coverage_figures(capsys: Any, world: dict[str, Path], tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    code, _, _ = cli(capsys, world, "eval", SYSTEM, world["test"], "--methods", "baseline,cot", "--html", page)
    assert code == 0
    text = page.read_text(encoding="utf-8")
    assert 'alt="reliability diagrams" src="data:image/png;base64,' in text
    assert 'alt="accuracy against coverage" src="data:image/png;base64,' in text


def concept_world(world: dict[str, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    """A system of overlapping concept classes ('colour: black', ...: each critter holds one per group) and
    manifests of the test and calibration splits labelled with every concept a species has."""
    system = System.load(SYSTEM).to_dict()
    groups = system["groups"]
    concepts = sorted({(g, rule[g]) for rule in system["rules"].values() for g in groups})
    rules = {f"{g}: {o}": {h: (o if h == g else list(spec["options"])) for h, spec in groups.items()} for g, o in concepts}
    concept_file = tmp_path / "concepts.yaml"
    concept_file.write_text(yaml.safe_dump({"name": "concepts", "groups": groups, "rules": rules}), encoding="utf-8")
    manifests = []
    for split in ("test", "cal"):
        lines = ["path,label"]
        for image in sorted(world[split].rglob("*.png")):
            species = system["rules"][image.parent.name]
            lines.append(f"{image},{';'.join(f'{g}: {species[g]}' for g in groups)}")
        manifest = tmp_path / f"{split}.csv"
        manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
        manifests.append(manifest)
    return concept_file, manifests[0], manifests[1]


def test_multi_label_on_overlapping_concept_classes(capsys: Any, world: dict[str, Path], tmp_path: Path) -> None:
    concepts, test, cal = concept_world(world, tmp_path)
    code, out, _ = cli(capsys, world, "eval", concepts, test, "--multi-label", "--threshold-data", cal, "--format", "json",
                       "--allow-outside-paths")
    assert code == 0, out
    payload = json.loads(out)
    ml = payload["multi_label"]
    assert ml["map"] > 0.9 and ml["micro_f1"] > 0.8 and ml["per_class_thresholds"] is True
    assert all({"precision", "recall", "f1", "ap", "support"} <= set(c) for c in ml["per_class"].values())
    assert 3 <= ml["mean_labels"] <= 6
    code, _, err = cli(capsys, world, "eval", concepts, test, "--multi-label", "--threshold", "0.5", "--conformal", "0.1",
                       "--conformal-data", cal, "--allow-outside-paths")
    assert code == 2 and "--multi-label: --conformal" in err
    images = sorted(world["test"].rglob("*.png"))[:2]
    code, out, _ = cli(capsys, world, "classify", concepts, *images, "--multi-label", "--threshold", "0.9", "--format", "json")
    assert code == 0
    for p in json.loads(out)["predictions"]:
        assert p["labels"] and all(label["score"] >= 0.9 for label in p["labels"])


def test_multi_label_eval_writes_rows_plot_and_page(capsys: Any, world: dict[str, Path], tmp_path: Path) -> None:
    concepts, test, cal = concept_world(world, tmp_path)
    page, plot, rows = tmp_path / "ml.html", tmp_path / "ml.png", tmp_path / "ml.csv"
    code, out, _ = cli(capsys, world, "eval", concepts, test, "--multi-label", "--threshold-data", cal, "--format", "json",
                       "--allow-outside-paths", "--html", page, "--plot", plot, "--output", rows)
    assert code == 0, out
    payload = json.loads(out)
    per_class = payload["multi_label"]["per_class"]
    assert payload["html"]["path"] == str(page) and payload["plots"] == [str(plot)] and plot.stat().st_size > 0
    table = list(csv.DictReader(rows.open(encoding="utf-8")))
    assert [r["class"] for r in table] == list(per_class)
    for row in table:
        figures = per_class[row["class"]]
        assert float(row["threshold"]) == pytest.approx(figures["threshold"]) and float(row["ap"]) == pytest.approx(figures["ap"])
        assert row["model"] == payload["model"] and row["system"] == payload["system"]["hash"]
    text = page.read_text(encoding="utf-8")
    assert 'alt="per-class average precision and F1" src="data:image/png;base64,' in text
    assert f"{100 * payload['multi_label']['map']:.1f}%" in text and text.count("<tr><td>") == len(per_class)
    code, out, _ = cli(capsys, world, "report", concepts, test, "--multi-label", "--threshold", "0.9", "--output", page,
                       "--allow-outside-paths")
    assert code == 0 and f"wrote {page}" in out and "0.900" in page.read_text(encoding="utf-8")


def test_eval_html_shows_conformal_sets_and_abstention(capsys: Any, world: dict[str, Path], tmp_path: Path) -> None:
    page = tmp_path / "sets.html"
    code, out, _ = cli(capsys, world, "eval", SYSTEM, world["test"], "--methods", "cot,cot-log", "--conformal", "0.1",
                       "--conformal-data", world["cal"], "--abstain", "-0.5", "--html", page, "--format", "json")
    assert code == 0
    payload = json.loads(out)
    text = page.read_text(encoding="utf-8")
    assert 'id="m0-decisions"' in text and 'alt="conformal set sizes" src="data:image/png;base64,' in text
    for c in payload["conformal"].values():
        assert sum(c["set_size_counts"]) == c["n_inputs"] == 56
        assert sum(size * n for size, n in enumerate(c["set_size_counts"])) == pytest.approx(c["mean_set_size"] * 56)
        assert f"{c['mean_set_size']:.2f}" in text and f"{100 * c['coverage']:.1f}%" in text
    assert "<table class=\"sortable abstention\">" in text


def test_explain_shows_calibrated_probabilities(capsys: Any, world: dict[str, Path]) -> None:
    image = sorted(world["test"].rglob("*.png"))[0]
    code, out, _ = cli(capsys, world, "explain", SYSTEM, image, "--format", "json")
    assert code == 0
    payload = json.loads(out)
    assert payload["probabilities"] == "calibrated" and payload["fit_score"] <= 0
    assert payload["top"][0]["probability"] > 0.5
    code, out, _ = cli(capsys, world, "explain", SYSTEM, image)
    assert "probability" in out


@pytest.mark.parametrize("flags, named", [
    (["--conformal", "0", "--conformal-data", "CAL"], "--conformal"),
    (["--conformal", "1", "--conformal-data", "CAL"], "--conformal"),
    (["--conformal", "nan", "--conformal-data", "CAL"], "--conformal"),
    (["--conformal", "0.1"], "--conformal-data"),
    (["--conformal", "0.1", "--conformal-data", "SMALL"], "at least 20"),
    (["--conformal", "0.001", "--conformal-data", "CAL"], "--conformal 0.001"),
    (["--abstain", "nan"], "--abstain"),
    (["--abstain", "inf"], "--abstain"),
    (["--abstain-target", "precision=1.5", "--abstain-data", "CAL"], "--abstain-target"),
    (["--abstain-target", "precision=0.9"], "--abstain-data"),
    (["--abstain", "-1", "--abstain-target", "coverage=0.9", "--abstain-data", "CAL"], "choose one"),
    (["--multi-label", "--threshold", "inf"], "--threshold"),
    (["--multi-label"], "--threshold"),
    (["--threshold", "0.5"], "--multi-label"),
])
def test_bad_decision_flags_exit_2_naming_the_flag(capsys: Any, world: dict[str, Path], flags: list[str], named: str) -> None:
    image = sorted(world["test"].rglob("*.png"))[0]
    argv = [str(world["cal"]) if f == "CAL" else str(world["small"]) if f == "SMALL" else f for f in flags]
    code, _, err = cli(capsys, world, "classify", SYSTEM, image, *argv)
    assert code == 2
    assert named in err
