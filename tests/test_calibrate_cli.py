"""``cotembed calibrate``: fits on labelled data, writes a new validated system, reports before/after."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from tests.support import COLOUR_SYSTEM, make_image_folder, run_cli

from cotembed.system import System


def _setup(tmp_path: Path, classes: tuple[str, ...] = ("red", "green", "blue", "yellow")) -> tuple[Path, Path]:
    system = tmp_path / "colours.yaml"
    system.write_text(yaml.safe_dump(COLOUR_SYSTEM), encoding="utf-8")
    return system, make_image_folder(tmp_path / "data", per_class=6, classes=classes)


def test_calibrate_writes_a_new_system_with_the_fitted_temperature(tmp_path: Path, capsys, colour_model: str) -> None:
    system, data = _setup(tmp_path)
    out = tmp_path / "calibrated.yaml"
    code, stdout, _ = run_cli(capsys, "calibrate", system, data, "--model", colour_model, "--out", out, "--format", "json",
                              "--no-cache", "-q", "--plot", tmp_path / "rel.png")
    assert code == 0
    payload = json.loads(stdout)
    written = System.load(out)
    assert written.temperature == payload["fit"]["temperature"] != payload["fit"]["temperature_before"]
    assert payload["out"]["hash"] == written.fingerprint != System.load(system).fingerprint
    fit = payload["evaluation"]["fit"]["metrics"]
    assert fit["product, calibrated"]["nll"] <= fit["product, before"]["nll"]
    assert (tmp_path / "rel.png").stat().st_size > 0
    assert out.read_text(encoding="utf-8").startswith("# Calibrated by `cotembed calibrate`")


def test_calibrate_refuses_to_write_over_an_input(tmp_path: Path, capsys, colour_model: str) -> None:
    system, data = _setup(tmp_path)
    before = system.read_bytes()
    code, _, err = run_cli(capsys, "calibrate", system, data, "--model", colour_model, "--out", system, "--no-cache", "-q")
    assert code == 2 and "refusing to write over an input" in err and system.read_bytes() == before
    code, _, err = run_cli(capsys, "calibrate", system, data, "--model", colour_model, "--out", data / "x.yaml", "--no-cache", "-q")
    assert code == 2 and "--out" in err


def test_calibrate_names_classes_missing_from_the_data(tmp_path: Path, capsys, colour_model: str) -> None:
    system, data = _setup(tmp_path, classes=("red", "green", "blue"))
    code, stdout, _ = run_cli(capsys, "calibrate", system, data, "--model", colour_model, "--out", tmp_path / "c.yaml",
                              "--format", "json", "--no-cache", "-q")
    assert code == 0
    assert any("yellow-thing" in note for note in json.loads(stdout)["fit"]["notes"])
