"""The ONNX Runtime backend: packaged MiniLM exports, their agreement with PyTorch, and bad model files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cotembed.encoders import load_encoder, parse_spec
from cotembed.encoders._onnx import PACKAGED, OnnxTextEncoder, model_key, resolve_packaged
from cotembed.errors import InputError, ModelFileError
from cotembed.testing import check_encoder
from support import run_cli

TEXTS = [
    "any of numerous tall coarse woodland plants of the genus Scrophularia",
    "tropical American palm having edible nuts and yielding a useful fiber",
    "grapes", "roller skate", "a red apple on the table", "the quick brown fox jumps over the lazy dog",
    "evergreen shrub with bell-shaped flowers on acid heaths " * 20,  # longer than 256 tokens: truncated alike
    "x",
]


@pytest.fixture(scope="module")
def int8() -> OnnxTextEncoder:
    return load_encoder("minilm-int8", batch_size=3, threads=2)


@pytest.fixture(scope="module")
def l3() -> OnnxTextEncoder:
    return load_encoder("minilm-l3", batch_size=3)


@pytest.fixture()
def l3_dir(tmp_path: Path) -> Path:
    """A user's export folder: the L3 graph, the MiniLM tokenizer, no declaration yet."""
    packaged = resolve_packaged("minilm-l3")
    (tmp_path / "model.onnx").symlink_to(packaged.onnx_path)
    shutil.copy(packaged.tokenizer_path, tmp_path / "tokenizer.json")
    return tmp_path


@pytest.mark.parametrize("name", ["minilm-int8", "minilm-l3"])
def test_packaged_models_pass_check_encoder(name: str) -> None:
    assert "text_large_batch" in check_encoder(load_encoder(name, batch_size=2))


def test_int8_agrees_with_pytorch_minilm(int8: OnnxTextEncoder) -> None:
    reference = load_encoder("minilm", device="cpu", batch_size=4).encode_texts(TEXTS)
    cosine = (int8.encode_texts(TEXTS) * reference).sum(axis=1)
    assert cosine.min() >= 0.99, cosine


def test_l3_with_the_minilm_vocabulary_orders_meaning(l3: OnnxTextEncoder) -> None:
    """A wrong vocabulary of the right size would scramble meaning; this one keeps it."""
    a, b, c = l3.encode_texts(["a cat sits on the mat", "a kitten is sitting on a rug", "stock markets fell sharply today"])
    assert a @ b > a @ c + 0.3


def test_keys_hold_the_file_checksum_and_the_declaration(int8: OnnxTextEncoder, l3_dir: Path) -> None:
    assert int8.model_key.startswith("onnx:minilm-int8@" + PACKAGED["minilm-int8"].onnx_sha256[:16])
    (l3_dir / "cotembed-onnx.json").write_text(json.dumps({"pooling": "pooled", "output": "461", "max_length": 128}))
    spec = f"onnx:{l3_dir / 'model.onnx'}"
    lazy = load_encoder(spec, lazy=True)
    assert lazy.model_key == load_encoder(spec).model_key
    assert model_key(str(l3_dir), {}) == lazy.model_key  # the folder names the same file
    assert model_key(str(l3_dir), {"pooling": "mean", "output": "onnx::Shape_422"}) != lazy.model_key
    copy = l3_dir / "copy"
    copy.mkdir()
    data = bytearray(resolve_packaged("minilm-l3").onnx_path.read_bytes())
    (copy / "model.onnx").write_bytes(data)
    shutil.copy(l3_dir / "tokenizer.json", copy)
    shutil.copy(l3_dir / "cotembed-onnx.json", copy)
    before = model_key(str(copy), {})
    data[-1] ^= 1
    (copy / "model.onnx").write_bytes(data)
    after = model_key(str(copy), {})
    assert before.split("@")[1] == lazy.model_key.split("@")[1]  # same bytes, same checksum
    assert after != before


def test_declarations_by_option_and_by_sentence_transformers_folder(l3: OnnxTextEncoder, l3_dir: Path) -> None:
    by_option = load_encoder(f"onnx:{l3_dir}", pooling="mean", output="onnx::Shape_422", max_length=128)
    assert np.allclose(by_option.encode_texts(TEXTS[:4]), l3.encode_texts(TEXTS[:4]), atol=1e-5)
    (l3_dir / "1_Pooling").mkdir()
    (l3_dir / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    (l3_dir / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    by_folder = load_encoder(f"onnx:{l3_dir}", output="onnx::Shape_422")
    assert by_folder.pooling.pooling == "mean" and by_folder.pooling.max_length == 128


def test_undeclared_pooling_is_refused(l3_dir: Path) -> None:
    with pytest.raises(ModelFileError, match="refusing to guess") as info:
        load_encoder(f"onnx:{l3_dir}")
    assert str(l3_dir / "model.onnx") in str(info.value)


@pytest.mark.parametrize("cut", [-100, 7])
def test_tokenizer_that_does_not_fit_the_embedding_matrix(l3_dir: Path, cut: int) -> None:
    vocab = (resolve_packaged("minilm-l3").tokenizer_path.parent / "vocab.txt").read_text(encoding="utf-8").splitlines()
    vocab = vocab[:cut] if cut < 0 else vocab + [f"[extra{i}]" for i in range(cut)]
    (l3_dir / "tokenizer.json").unlink()
    (l3_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    with pytest.raises(ModelFileError, match=f"has {len(vocab)} entries") as info:
        load_encoder(f"onnx:{l3_dir}", pooling="pooled", output="461")
    assert "vocab.txt" in str(info.value) and "model.onnx" in str(info.value)


@pytest.mark.parametrize(("pooling", "output", "expected"), [
    ("pooled", "onnx::Shape_422", r"expected \(batch, dim\)"),
    ("mean", "461", r"expected \(batch, tokens, dim\)"),
    ("mean", "no-such-output", "is not one of its outputs"),
])
def test_unexpected_output_shape(l3_dir: Path, pooling: str, output: str, expected: str) -> None:
    with pytest.raises(ModelFileError, match=expected):
        load_encoder(f"onnx:{l3_dir}", pooling=pooling, output=output)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        load_encoder(f"onnx:{tmp_path / 'absent.onnx'}", pooling="mean")
    corrupt = tmp_path / "model.onnx"
    corrupt.write_bytes(b"\x08\x07not a protobuf graph" * 50)
    shutil.copy(resolve_packaged("minilm-l3").tokenizer_path, tmp_path / "tokenizer.json")
    with pytest.raises(ModelFileError, match="expected a valid ONNX graph") as info:
        load_encoder(f"onnx:{corrupt}", pooling="mean")
    assert str(corrupt) in str(info.value)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(ModelFileError, match="tokenizer.json or vocab.txt beside it"):
        load_encoder(f"onnx:{tmp_path}", pooling="mean")
    with pytest.raises(InputError, match="pooling='max' must be one of"):
        load_encoder(f"onnx:{resolve_packaged('minilm-l3').onnx_path}", tokenizer=str(resolve_packaged("minilm-l3").tokenizer_path),
                     pooling="max")


def test_cli_exit_code_2_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    system = Path(__file__).resolve().parents[1] / "examples" / "emoji-subgroups" / "system.yaml"
    code, out, err = run_cli(capsys, "classify", system, "grapes", "--text", "--model", f"onnx:{tmp_path / 'gone.onnx'}",
                             "--cache", tmp_path / "c.sqlite")
    assert code == 2 and "gone.onnx" in err


def test_models_lists_the_backend_and_shortcuts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "models", "--format", "json")
    rows = {r["spec"]: r for r in json.loads(out)["models"]}
    assert code == 0 and {"onnx:<...>", "minilm-int8", "minilm-l3"} <= set(rows)
    assert all(rows[s]["installed"] and rows[s]["extra"] == "onnx" for s in ("onnx:<...>", "minilm-int8", "minilm-l3"))
    assert parse_spec("minilm-int8")[0].options == ("batch_size", "threads")
    with pytest.raises(InputError, match="unknown option"):
        load_encoder("minilm-int8", device="cpu")
