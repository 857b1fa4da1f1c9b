"""The bundled critters model: loads offline with its recorded checksum, reproduces the
chain-of-thought effect on a freshly generated split, and trains deterministically."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cotembed.cli import main
from cotembed.encoders import load_encoder
from cotembed.errors import ModelLoadError
from cotembed_critters.model import CONFIG_FILE, WEIGHTS_DIR, WEIGHTS_FILE, file_sha256

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


@pytest.mark.slow
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



# ------------------------------------------------------------------ encoder
@pytest.mark.slow
def test_critters_encoder_meets_the_encoder_contract():
    from cotembed.testing import check_encoder

    encoder = load_encoder("critters")
    assert (encoder.dim, encoder.input_size, encoder.batch_size) == (384, 64, 128)
    assert encoder.modalities == frozenset({"image", "text"})
    assert "image_embeddings" in check_encoder(encoder)  # ends with close() twice


def test_close_drops_the_tower_and_the_text_model():
    import gc
    import weakref

    from cotembed.errors import CotembedError
    from cotembed.testing import sample_images

    encoder = load_encoder("critters", batch_size=7)
    assert encoder.batch_size == 7
    tower, text_model = weakref.ref(encoder.tower), weakref.ref(encoder.text_model.model)
    batch = encoder.preprocess(sample_images()[:2])
    encoder.close()
    encoder.close()
    gc.collect()
    assert tower() is None and text_model() is None
    with pytest.raises(CotembedError, match="closed"):
        encoder.encode_preprocessed(batch)
    with pytest.raises(CotembedError, match="closed"):
        encoder.encode_texts(["a red bird"])


def test_critters_encoder_takes_only_batch_size_and_device():
    import inspect

    from cotembed.encoders._critters import CrittersEncoder
    from cotembed.errors import InputError

    params = inspect.signature(CrittersEncoder).parameters
    assert {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY} == {"batch_size", "device"}
    assert not [p for p in params.values() if p.kind is p.VAR_KEYWORD]
    with pytest.raises(InputError, match="unknown option"):
        load_encoder("critters", batchsize=2)
    with pytest.raises(InputError, match="batch_size"):
        CrittersEncoder(batch_size=0)


def test_device_moves_the_tower():
    torch = pytest.importorskip("torch")
    from cotembed.errors import InputError

    encoder = load_encoder("critters", device="cpu")
    assert next(encoder.tower.parameters()).device.type == "cpu"
    encoder.close()
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="not available"):
            load_encoder("critters", device="cuda")
        return
    from cotembed.testing import sample_images

    cpu = load_encoder("critters")
    gpu = load_encoder("critters", device="cuda")
    assert next(gpu.tower.parameters()).device.type == "cuda"
    batch = cpu.preprocess(sample_images())
    np.testing.assert_allclose(gpu.encode_preprocessed(batch), cpu.encode_preprocessed(batch), atol=1e-4)
