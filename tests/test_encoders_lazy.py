"""Lazy encoders: a run whose embeddings are cached never builds the model; anything
that needs the model builds it exactly once and records what a later run must know."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pytest
from PIL import Image

from cotembed import encoders
from cotembed._pipeline import embed_texts, stream_embeddings
from cotembed.cache import EmbeddingCache, NoCache
from cotembed.data import collect_samples
from cotembed.encoders import LazyEncoder, load_encoder
from cotembed.errors import CotembedError, InputError, ModelLoadError
from cotembed.testing import check_encoder
from support import ColourEncoder, make_image_folder

DEFAULT_BATCH_SIZE = 4
CONSTRUCTED: list[str] = []
PROMPTS = ["a photo of something red", "a photo of something green", "a photo of something blue"]


class CountingEncoder(ColourEncoder):
    """The colour double behind a spec, counting how often it is built."""

    def __init__(self, argument: str, *, batch_size: int | None = None, device: str | None = None) -> None:
        CONSTRUCTED.append(argument)
        super().__init__(argument)
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE


def counting_key(argument: str, options: Mapping[str, Any]) -> str:
    return f"test:{argument}"


def wrong_key(argument: str, options: Mapping[str, Any]) -> str:
    return f"test:not-{argument}"


@pytest.fixture(autouse=True)
def counting() -> Iterator[None]:
    """Registers ``count:<name>`` (lazy-capable) and ``keyless:<name>`` (no cheap key) for one test."""
    common = dict(module=__name__, factory="CountingEncoder", extra="dev", inputs="image, text",
                  description="counting test double", options=("batch_size", "device"))
    with (encoders.registered_backend(encoders.Backend("count", example="count:x", key="counting_key", **common)),
          encoders.registered_backend(encoders.Backend("keyless", example="keyless:x", **common)),
          encoders.registered_backend(encoders.Backend("wrongkey", example="wrongkey:x", key="wrong_key", **common))):
        CONSTRUCTED.clear()
        yield


def _run(encoder: Any, samples: list, cache: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """What a classification run asks of its encoder: input and prompt embeddings, and the facts."""
    images = np.concatenate([b.embeddings for b in stream_embeddings(samples, encoder, cache)])
    prompts = embed_texts(PROMPTS, encoder, cache)
    return images, prompts, {"logit_scale": encoder.logit_scale, "dim": encoder.dim, "input_size": encoder.input_size}


def test_cached_run_never_builds_the_model(tmp_path: Path) -> None:
    samples = collect_samples([make_image_folder(tmp_path / "data", per_class=2)])
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        first = load_encoder("count:colour", lazy=True, info_store=cache)
        assert isinstance(first, LazyEncoder) and not first.loaded
        images, prompts, facts = _run(first, samples, cache)
        assert first.loaded and CONSTRUCTED == ["colour"]
        assert facts == {"logit_scale": 50.0, "dim": 8, "input_size": 8}
        assert cache.get_model_info("test:colour") == facts
        first.close()

        second = load_encoder("count:colour", lazy=True, info_store=cache)
        again_images, again_prompts, again_facts = _run(second, samples, cache)
        assert CONSTRUCTED == ["colour"] and not second.loaded
        np.testing.assert_array_equal(again_images, images)
        np.testing.assert_array_equal(again_prompts, prompts)
        assert again_facts == facts

        embed_texts(["a photo of something yellow"], second, cache)  # a new prompt needs the model
        assert CONSTRUCTED == ["colour", "colour"] and second.loaded


def test_identity_is_known_without_loading() -> None:
    enc = load_encoder("count:colour", lazy=True, batch_size=3)
    assert (enc.model_key, enc.modalities, enc.batch_size) == ("test:colour", frozenset({"image", "text"}), 3)
    assert load_encoder("count:colour", lazy=True).batch_size == DEFAULT_BATCH_SIZE
    assert CONSTRUCTED == [] and not enc.loaded
    assert "not loaded" in repr(enc)


def test_default_batch_size_from_the_factory_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a module DEFAULT_BATCH_SIZE, the factory's class attribute says it; the key
    function may live in another module (``module:function``)."""
    backend = encoders.Backend("colour", "support", "ColourEncoder", "dev", "image, text", "double", "colour:x",
                               key=f"{__name__}:counting_key")
    with encoders.registered_backend(backend):
        enc = load_encoder("colour:c", lazy=True)
    assert (enc.model_key, enc.batch_size, enc.loaded) == ("test:c", ColourEncoder.batch_size, False)


def test_missing_facts_load_once_even_from_many_threads() -> None:
    enc = load_encoder("count:colour", lazy=True, info_store=NoCache())
    images = [Image.new("RGB", (8, 8), "red")] * 2
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda _: enc.preprocess(images), range(16)))
    assert CONSTRUCTED == ["colour"] and len(batches) == 16
    assert enc.dim == 8 and enc.encode_texts(["red"]).shape == (1, 8)
    assert enc.images_encoded == 0  # other attributes are the real encoder's
    assert CONSTRUCTED == ["colour"]


def test_bad_stored_facts_count_as_missing(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        cache.put_model_info("test:colour", {"logit_scale": math.nan, "dim": "eight", "input_size": 8})
        enc = load_encoder("count:colour", lazy=True, info_store=cache)
        assert enc.input_size == 8 and CONSTRUCTED == []
        assert enc.logit_scale == 50.0 and CONSTRUCTED == ["colour"]
        assert cache.get_model_info("test:colour") == {"logit_scale": 50.0, "dim": 8, "input_size": 8}


def test_facts_given_as_options_are_not_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """jina-api's logit_scale is chosen per call; the record keeps only the model's own facts."""
    monkeypatch.setenv("JINA_API_KEY", "k")
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        enc = load_encoder("jina-api:jina-clip-v2", lazy=True, info_store=cache, logit_scale=30.0, dimensions=4)
        assert enc.logit_scale == 30.0 and not enc.loaded
        assert enc.dim == 4 and enc.loaded  # no record yet: built (no request: dimensions is known)
        assert cache.get_model_info("jina-api:jina-clip-v2@4") == {"dim": 4, "input_size": None}
        later = load_encoder("jina-api:jina-clip-v2", lazy=True, info_store=cache, dimensions=4)
        assert later.dim == 4 and not later.loaded
        assert later.logit_scale is None and later.loaded


def test_options_are_checked_before_anything_loads() -> None:
    with pytest.raises(InputError, match=r"unknown option\(s\) 'batchsize' for model count:colour; accepted: batch_size, device"):
        load_encoder("count:colour", lazy=True, batchsize=2)
    with pytest.raises(InputError, match="batch_size=-1 must be a positive integer"):
        load_encoder("count:colour", lazy=True, batch_size=-1)
    assert CONSTRUCTED == []


def test_backend_without_a_cheap_key_loads_at_once() -> None:
    enc = load_encoder("keyless:colour", lazy=True)
    assert enc.loaded and CONSTRUCTED == ["colour"] and enc.model_key == "test:colour"


def test_a_key_function_that_disagrees_with_the_model_is_caught() -> None:
    enc = load_encoder("wrongkey:colour", lazy=True)
    assert enc.model_key == "test:not-colour"
    with pytest.raises(ModelLoadError, match="loaded as test:colour, not the test:not-colour"):
        enc.encode_texts(["red"])


def test_close_is_idempotent_and_final() -> None:
    never = load_encoder("count:colour", lazy=True)
    never.close()
    never.close()
    assert CONSTRUCTED == [] and "closed" in repr(never)
    with pytest.raises(CotembedError, match="was closed"):
        never.encode_texts(["red"])
    used = load_encoder("count:colour", lazy=True)
    used.encode_texts(["red"])
    inner = used._inner
    used.close()
    assert inner.closed and not used.loaded
    with pytest.raises(CotembedError, match="was closed"):
        used.preprocess([Image.new("RGB", (4, 4))])


def test_lazy_encoder_passes_check_encoder(tiny_clip_dir: Path) -> None:
    enc = load_encoder(f"hf:{tiny_clip_dir}", lazy=True, device="cpu", batch_size=2)
    assert check_encoder(enc)[-1] == "close"


def test_eager_load_records_facts_too(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        enc = load_encoder("count:colour", info_store=cache)
        assert isinstance(enc, CountingEncoder)
        assert cache.get_model_info("test:colour") == {"logit_scale": 50.0, "dim": 8, "input_size": 8}


_KEY_SCRIPT = """
import json, sys
from cotembed.encoders import load_encoder
enc = load_encoder(sys.argv[1], lazy=True, device="cpu")
print(json.dumps({"key": enc.model_key, "modalities": sorted(enc.modalities), "batch_size": enc.batch_size,
                  "torch": "torch" in sys.modules, "loaded": enc.loaded}))
"""


@pytest.mark.parametrize("spec", ["critters", "minilm", "hf:TINY"])
def test_real_backends_know_their_key_without_torch(spec: str, tiny_clip_dir: Path) -> None:
    """The cheap key equals the loaded encoder's, and computing it imports no torch."""
    spec = spec.replace("TINY", str(tiny_clip_dir))
    out = subprocess.run([sys.executable, "-c", _KEY_SCRIPT, spec], capture_output=True, text=True, check=True)
    lazy = json.loads(out.stdout)
    assert lazy["torch"] is False and lazy["loaded"] is False
    real = load_encoder(spec, device="cpu")
    assert lazy["key"] == real.model_key
    assert lazy["modalities"] == sorted(real.modalities) and lazy["batch_size"] == real.batch_size


def test_critters_key_reads_the_weights_record(tmp_path: Path) -> None:
    from cotembed_critters.model import CONFIG_FILE, WEIGHTS_DIR

    record = json.loads((WEIGHTS_DIR / CONFIG_FILE).read_text(encoding="utf-8"))
    assert load_encoder("critters", lazy=True).model_key == f"critters:{record['sha256'][:12]}"
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**record, "sha256": "ab" * 32}), encoding="utf-8")
    assert load_encoder(f"critters:{tmp_path}", lazy=True).model_key == "critters:abababababab"
    with pytest.raises(ModelLoadError, match=r"critters weights not found: .*does not exist"):
        load_encoder(f"critters:{tmp_path / 'nowhere'}", lazy=True)
    (tmp_path / CONFIG_FILE).write_text("{}", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="no readable 'sha256' field"):
        load_encoder(f"critters:{tmp_path}", lazy=True)
