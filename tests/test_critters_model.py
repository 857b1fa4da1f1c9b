"""The bundled critters model: loads offline with its recorded checksum, reproduces the
chain-of-thought effect on a freshly generated split, and trains deterministically."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cotembed.cli import main
from cotembed.critters.model import CONFIG_FILE, WEIGHTS_DIR, WEIGHTS_FILE, file_sha256
from cotembed.encoders import load_encoder
from cotembed.errors import ModelLoadError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "critters"


def test_bundled_weights_load_offline_with_recorded_checksum():
    record = json.loads((WEIGHTS_DIR / CONFIG_FILE).read_text(encoding="utf-8"))
    assert file_sha256(WEIGHTS_DIR / WEIGHTS_FILE) == record["sha256"]
    assert (WEIGHTS_DIR / WEIGHTS_FILE).stat().st_size <= 20 * 1024 * 1024
    encoder = load_encoder("critters")
    assert encoder.model_key == f"critters:{record['sha256'][:12]}"
    assert encoder.logit_scale == pytest.approx(record["logit_scale"])
    assert record["train_seconds"] <= 15 * 60


def test_tampered_weights_are_refused(tmp_path):
    copy = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, copy)
    data = bytearray((copy / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0xFF
    (copy / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="checksum"):
        load_encoder(f"critters:{copy}")


def test_cot_far_above_baseline_on_a_fresh_easy_split(tmp_path, capsys):
    split = tmp_path / "easy"
    assert main(["critters", "generate", "--species", str(EXAMPLES / "species.yaml"), "--per-class", "10",
                 "--seed", "424242", "--out", str(split), "-q"]) == 0
    capsys.readouterr()
    code = main(["eval", str(EXAMPLES / "system.yaml"), str(split), "--model", "critters", "--no-cache", "-q", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["n_images"] == 10 * report["n_classes"] and report["n_classes"] >= 24
    baseline, cot = report["methods"]["baseline"]["accuracy"], report["methods"]["cot"]["accuracy"]
    assert cot - baseline >= 0.30, (baseline, cot)


def test_training_is_deterministic(tmp_path):
    from cotembed.critters.model import TowerConfig
    from cotembed.critters.train import TrainConfig, train

    config = TrainConfig(n_train=96, n_val=16, captions_per_image=1, epochs=1, batch_size=32,
                         tower=TowerConfig(channels=(8, 8, 8, 8)))
    first = train(config, tmp_path / "a", log=lambda _: None)
    second = train(config, tmp_path / "b", log=lambda _: None)
    assert first["sha256"] == second["sha256"]
    third = train(TrainConfig(**{**config.__dict__, "seed": 1}), tmp_path / "c", log=lambda _: None)
    assert third["sha256"] != first["sha256"]
