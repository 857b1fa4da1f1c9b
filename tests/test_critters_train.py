"""Training the critters tower: where it writes, what it leaves of torch's global state,
what it asks of the text tower and the cache. A hashed stand-in text tower keeps these
fast; the bundled MiniLM is the one `critters train` uses."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from cotembed.cache import EmbeddingCache
from cotembed.errors import InputError
from cotembed_critters.model import CONFIG_FILE, WEIGHTS_DIR, WEIGHTS_FILE, TowerConfig, file_sha256
from cotembed_critters.train import TrainConfig, default_train_dir, train

TINY = TrainConfig(n_train=64, n_val=8, captions_per_image=2, epochs=1, batch_size=32, tower=TowerConfig(channels=(4, 4, 4, 4)))


class HashedTextTower:
    """Each text embeds to a fixed random unit vector seeded by its hash; counts what it encodes."""

    def __init__(self, dim: int = 384, key: str = "test:hashed-text") -> None:
        self.model_key = key
        self.size = dim
        self.encoded: list[str] = []

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.encoded += texts
        rows = [np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:16], 16)).standard_normal(self.size) for t in texts]
        out = np.asarray(rows, dtype=np.float32).reshape(len(texts), self.size)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _quiet(_: str) -> None:
    return None


# ------------------------------------------------------------- output folder
def test_default_train_dir_is_a_user_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("COTEMBED_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_train_dir() == tmp_path / "home" / "critters-weights"
    monkeypatch.delenv("COTEMBED_HOME")
    assert default_train_dir() == tmp_path / "xdg" / "cotembed" / "critters-weights"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/path")  # the XDG spec says to ignore relative paths
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_train_dir() == tmp_path / "user" / ".local" / "share" / "cotembed" / "critters-weights"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_train_dir() == tmp_path / "user" / ".local" / "share" / "cotembed" / "critters-weights"
    assert WEIGHTS_DIR not in (default_train_dir(), *default_train_dir().parents)


def test_train_without_out_dir_writes_to_the_user_folder_not_the_package(monkeypatch, tmp_path):
    shipped = {name: file_sha256(WEIGHTS_DIR / name) for name in (WEIGHTS_FILE, CONFIG_FILE)}
    monkeypatch.setenv("COTEMBED_HOME", str(tmp_path))
    record = train(TINY, log=_quiet, text_encoder=HashedTextTower())
    written = tmp_path / "critters-weights"
    assert file_sha256(written / WEIGHTS_FILE) == record["sha256"]
    assert {name: file_sha256(WEIGHTS_DIR / name) for name in shipped} == shipped


# --------------------------------------------------------- torch global state
def _torch_state(torch):
    return (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(), torch.get_rng_state())


@pytest.fixture
def torch_state():
    """Sets torch's globals to values training would change, and puts the originals back after."""
    torch = pytest.importorskip("torch")
    before = _torch_state(torch)
    torch.set_num_threads(1)  # TINY trains with 2
    torch.use_deterministic_algorithms(False)
    torch.manual_seed(1234)
    yield torch
    torch.set_num_threads(before[0])
    torch.use_deterministic_algorithms(before[1], warn_only=before[2])
    torch.set_rng_state(before[3])


@pytest.mark.slow
def test_train_restores_torch_global_state(torch_state, tmp_path):
    torch = torch_state
    threads, deterministic, warn_only, rng = _torch_state(torch)
    expected_draw = torch.rand(4)
    torch.set_rng_state(rng)
    train(TINY, tmp_path / "w", log=_quiet, text_encoder=HashedTextTower())
    assert _torch_state(torch)[:3] == (threads, deterministic, warn_only)
    assert torch.equal(torch.rand(4), expected_draw)  # the caller's random stream goes on where it was


def test_train_restores_torch_global_state_when_it_fails(torch_state, tmp_path):
    torch = torch_state
    before = _torch_state(torch)
    tower = HashedTextTower(dim=16)  # no `dim` attribute: the mismatch shows only once captions are embedded
    with pytest.raises(InputError, match="16-dimensional embeddings; the tower is built for tower.embed_dim=384"):
        train(TINY, tmp_path / "w", log=_quiet, text_encoder=tower)
    after = _torch_state(torch)
    assert after[:3] == before[:3] and torch.equal(after[3], before[3])
    assert not (tmp_path / "w").exists()


def test_a_text_tower_of_the_wrong_size_is_refused_before_any_work(tmp_path):
    tower = HashedTextTower(dim=16)
    tower.dim = 16  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="test:hashed-text gives 16-dimensional embeddings"):
        train(TINY, tmp_path / "w", log=_quiet, text_encoder=tower)
    assert tower.encoded == []


# ------------------------------------------------------------- determinism, cache
@pytest.mark.slow
def test_training_is_deterministic_and_seed_dependent(tmp_path):
    first = train(TINY, tmp_path / "a", log=_quiet, text_encoder=HashedTextTower())
    second = train(TINY, tmp_path / "b", log=_quiet, text_encoder=HashedTextTower())
    assert first["sha256"] == second["sha256"]
    third = train(TrainConfig(**{**TINY.__dict__, "seed": 1}), tmp_path / "c", log=_quiet, text_encoder=HashedTextTower())
    assert third["sha256"] != first["sha256"]


def test_a_rerun_reads_caption_embeddings_from_the_cache(tmp_path):
    cold, warm = HashedTextTower(), HashedTextTower()
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        first = train(TINY, tmp_path / "a", log=_quiet, text_encoder=cold, cache=cache)
        second = train(TINY, tmp_path / "b", log=_quiet, text_encoder=warm, cache=cache)
    assert len(cold.encoded) == first["distinct_captions"] + 31  # captions, then the 31 monitor prompts
    assert len(set(cold.encoded)) == len(cold.encoded)
    assert warm.encoded == []
    assert second["sha256"] == first["sha256"]
    assert first["text_tower"].startswith("test:hashed-text")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"n_train": 10}, "n_train (--n-train) must be at least batch_size (--batch-size, 32)"),
        ({"epochs": 0}, "epochs (--epochs) must be an integer >= 1, got 0"),
        ({"batch_size": 1}, "batch_size (--batch-size) must be an integer >= 2"),
        ({"threads": 0}, "threads (--threads) must be an integer >= 1"),
        ({"seed": -1}, "seed (--seed) must be an integer >= 0"),
        ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
        ({"weight_decay": float("inf")}, "weight_decay must be a finite number >= 0"),
    ],
)
def test_bad_training_config_names_the_field(override, message):
    with pytest.raises(InputError, match="invalid training config") as info:
        TrainConfig(**{**TINY.__dict__, **override})
    assert message in str(info.value)


@pytest.mark.slow
def test_bundled_minilm_trains_a_tower(tmp_path):
    """The real text tower `critters train` passes: loads offline and trains end to end."""
    from cotembed.encoders import load_encoder

    encoder = load_encoder("minilm")
    record = train(TINY, tmp_path / "w", log=_quiet, text_encoder=encoder)
    assert record["text_tower"] == f"{encoder.model_key} (frozen)"
    assert Path(tmp_path / "w" / WEIGHTS_FILE).stat().st_size == record["size_bytes"]
