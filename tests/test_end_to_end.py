"""Real loading paths end to end: a tiny random CLIP via ``hf:`` on generated images,
and the bundled MiniLM on the offline creatures demo (the README's main job)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cotembed.cli import main
from support import COLOUR_SYSTEM, make_image_folder

ROOT = Path(__file__).resolve().parent.parent


def run_json(capsys, *argv) -> tuple[int, dict]:
    code = main([str(a) for a in argv] + ["--format", "json", "-q"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {"stderr": err})


def test_tiny_clip_eval_classify_explain_and_cache(capsys, tmp_path, tiny_clip_dir):
    system = tmp_path / "colours.yaml"
    system.write_text(yaml.safe_dump(COLOUR_SYSTEM), encoding="utf-8")
    data = make_image_folder(tmp_path / "data", per_class=5)
    (data / "red-thing" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    cache = tmp_path / "cache.sqlite"
    spec = f"hf:{tiny_clip_dir}"

    code, report = run_json(capsys, "eval", system, data, "--model", spec, "--cache", cache, "--batch-size", "8")
    assert code == 1  # one input failed...
    assert report["n_images"] == 20 and report["n_encoded"] == 20  # ...the other 20 were scored
    assert [Path(e["input"]).name for e in report["errors"]] == ["corrupt.jpg"]
    assert report["model"] == f"hf:{tiny_clip_dir.resolve()}"
    assert report["temperature"] == pytest.approx(100.0, rel=1e-4)  # the model's own logit scale
    assert set(report["methods"]) == {"baseline", "cot", "hybrid"}
    assert all(m["total"] == 20 for m in report["methods"].values())

    code, again = run_json(capsys, "eval", system, data, "--model", spec, "--cache", cache)
    assert again["n_encoded"] == 0  # everything came from the cache
    assert again["methods"] == report["methods"]

    # classify agrees with eval: its cot predictions score exactly eval's cot accuracy.
    code, result = run_json(capsys, "classify", system, data, "--model", spec, "--cache", cache)
    assert code == 1 and len(result["predictions"]) == 20 and len(result["errors"]) == 1
    hits = sum(p["prediction"] == p["label"] for p in result["predictions"])
    assert hits == report["methods"]["cot"]["correct"]

    # explain agrees with classify on the same image.
    image = data / "green-thing" / "0.png"
    code, exp = run_json(capsys, "explain", system, image, "--model", spec, "--cache", cache)
    assert code == 0 and [q["group"] for q in exp["questions"]] == ["colour"]
    assert exp["prediction"] == next(p["prediction"] for p in result["predictions"] if p["input"] == str(image))
    assert sum(exp["questions"][0]["probabilities"].values()) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.slow
def test_minilm_creatures_demo_cot_far_above_baseline(capsys, tmp_path):
    demo = ROOT / "examples" / "creatures-text"
    code, report = run_json(capsys, "eval", demo / "system.yaml", demo / "test.csv", "--model", "minilm", "--no-cache")
    assert code == 0, report
    assert report["n_images"] == 128 and report["n_classes"] == 16
    baseline, cot = report["methods"]["baseline"]["accuracy"], report["methods"]["cot"]["accuracy"]
    assert baseline < 0.2 and cot > 0.8 and cot - baseline > 0.6
    assert report["methods"]["cot"]["text_prompts"] == 32 and report["methods"]["baseline"]["text_prompts"] == 16
