"""Train the critters image tower against a frozen text tower (all-MiniLM-L6-v2 for the shipped weights).

Images are rendered from *random attribute combinations* (never from the species
of the benchmark, never from the test splits) and paired with generated captions
that describe some or all of their attributes. The loss is a symmetric
contrastive loss with multiple positives: a caption counts as a match for every
image in the batch whose attributes it does not contradict ("a red creature"
matches every red image), so partial captions do not become false negatives.

Deterministic for a given config on a given machine: seeded data, seeded init,
fixed thread count. The text tower is a parameter (``train(..., text_encoder=...)``):
this package never imports the encoders, which import it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cotembed.errors import InputError
from cotembed_critters.captions import caption
from cotembed_critters.model import TowerConfig, build_tower, images_to_array, save_tower
from cotembed_critters.render import render
from cotembed_critters.species import PROMPTS
from cotembed_critters.world import ATTRIBUTE_NAMES, VOCABULARY


class TextEncoder(Protocol):
    """The frozen text tower: ``model_key`` names its embeddings in the cache."""

    @property
    def model_key(self) -> str: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbeddingStore(Protocol):
    """What training needs of :class:`cotembed.cache.EmbeddingCache` (or ``NoCache``)."""

    def get_many(self, model_key: str, kind: str, keys: Sequence[str]) -> dict[str, np.ndarray]: ...

    def put_many(self, model_key: str, kind: str, items: Mapping[str, np.ndarray]) -> None: ...


def default_train_dir() -> Path:
    """Where ``critters train`` writes by default: ``$COTEMBED_HOME/critters-weights``, else
    ``$XDG_DATA_HOME/cotembed/critters-weights``, else ``~/.local/share/cotembed/critters-weights``.

    A user folder, never the installed package: a retrain must not overwrite the shipped
    weights (or fail on a read-only install). Use it with ``--model critters:<dir>``.
    """
    home = os.environ.get("COTEMBED_HOME")
    if home:
        return Path(home).expanduser() / "critters-weights"
    data = os.environ.get("XDG_DATA_HOME")
    base = Path(data) if data and os.path.isabs(data) else Path.home() / ".local" / "share"  # XDG: ignore relative paths
    return base / "cotembed" / "critters-weights"


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    n_train: int = 20000
    n_val: int = 700
    captions_per_image: int = 4
    epochs: int = 12
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    threads: int = 2
    tower: TowerConfig = field(default_factory=TowerConfig)

    def __post_init__(self) -> None:
        """Every bad field at once, as an :class:`InputError` naming it (and its CLI flag)."""
        problems = []

        def whole(name: str, low: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                problems.append(f"{name} (--{name.replace('_', '-')}) must be an integer >= {low}, got {value!r}")

        for name, low in (("seed", 0), ("n_train", 1), ("n_val", 1), ("captions_per_image", 1),
                          ("epochs", 1), ("batch_size", 2), ("threads", 1)):
            whole(name, low)
        for name, floor, inclusive in (("lr", 0.0, False), ("weight_decay", 0.0, True)):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or not (value >= floor if inclusive else value > floor):
                problems.append(f"{name} must be a finite number {'>=' if inclusive else '>'} {floor:g}, got {value!r}")
        if not problems and self.n_train < self.batch_size:
            problems.append(f"n_train (--n-train) must be at least batch_size (--batch-size, {self.batch_size}) "
                            f"for one training step per epoch, got {self.n_train}")
        if problems:
            raise InputError("invalid training config: " + "; ".join(problems))


def random_attributes(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 4) value indices, uniform over every attribute combination."""
    return np.stack([rng.integers(len(VOCABULARY[a]), size=n) for a in ATTRIBUTE_NAMES], axis=1)


def attribute_dict(row: np.ndarray) -> dict[str, str]:
    return {a: VOCABULARY[a][int(i)].key for a, i in zip(ATTRIBUTE_NAMES, row, strict=True)}


_PHRASES = [
    (a_idx, v_idx, re.compile(r"(?<![\w-])" + re.escape(v.caption) + r"(?![\w-])"))
    for a_idx, a in enumerate(ATTRIBUTE_NAMES)
    for v_idx, v in enumerate(VOCABULARY[a])
]


def mentioned(text: str) -> np.ndarray:
    """(4,) value index each attribute the caption names, -1 where it names none."""
    out = np.full(len(ATTRIBUTE_NAMES), -1, dtype=np.int64)
    for a_idx, v_idx, pattern in _PHRASES:
        if pattern.search(text):
            out[a_idx] = v_idx
    return out


def render_pool(attrs: np.ndarray, seed: int, size: int, log: Callable[[str], None], what: str) -> np.ndarray:
    """Render every row of ``attrs`` as normalised model input, (n, 3, size, size) float32."""
    from tqdm.auto import tqdm

    out = np.empty((len(attrs), 3, size, size), dtype=np.float32)
    for i in tqdm(range(len(attrs)), desc=f"rendering {what}", unit="img", file=sys.stderr, leave=False):
        out[i] = images_to_array([render(attribute_dict(attrs[i]), seed=seed * 1_000_003 + i, size=size)], size)[0]
    log(f"rendered {len(attrs)} {what} images")
    return out


def embed_cached(texts: Sequence[str], encoder: TextEncoder, cache: EmbeddingStore | None) -> np.ndarray:
    """(len(texts), D) embeddings; what ``cache`` holds for ``encoder.model_key`` is reused,
    the rest is encoded and stored (same keys as :func:`cotembed._pipeline.embed_texts`).

    The missing texts go to the encoder in *one* call, not in the pipeline's batches:
    sentence-transformers sorts its input by length before batching, so cutting the list
    first changes the padding and the last bits of the embeddings, and with them the
    trained weights. One call keeps a retrain with the default config bit-identical to
    the shipped weights (on the machine that made them).
    """
    from cotembed.cache import text_key

    keys = [text_key(t) for t in texts]
    found = cache.get_many(encoder.model_key, "text", keys) if cache is not None else {}
    missing = [i for i, k in enumerate(keys) if k not in found]
    if missing:
        encoded = np.asarray(encoder.encode_texts([texts[i] for i in missing]), dtype=np.float32)
        if encoded.ndim != 2 or encoded.shape[0] != len(missing):
            raise InputError(f"text encoder {encoder.model_key} returned shape {encoded.shape} for {len(missing)} texts")
        new = {keys[i]: vec for i, vec in zip(missing, encoded, strict=True)}
        if cache is not None:
            cache.put_many(encoder.model_key, "text", new)
        found = {**found, **new}
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)


@contextlib.contextmanager
def torch_training_state(torch: Any, seed: int, threads: int) -> Iterator[None]:
    """Seeded CPU RNG, ``threads`` intra-op threads and deterministic kernels inside the block;
    the caller's RNG state, thread count and determinism setting come back after it, on
    success or error, so training in a notebook or a test leaves torch as it was."""
    threads_before = torch.get_num_threads()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    warn_only_before = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):  # saves and restores the CPU generator
        try:
            torch.default_generator.manual_seed(seed)  # CPU only: CUDA generators stay untouched
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(True)
            yield
        finally:
            torch.set_num_threads(threads_before)
            torch.use_deterministic_algorithms(deterministic_before, warn_only=warn_only_before)


def train(
    config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    *,
    text_encoder: TextEncoder,
    cache: EmbeddingStore | None = None,
) -> dict[str, Any]:
    """Train a tower, write it to ``out_dir`` (default :func:`default_train_dir`), return its record.

    ``text_encoder``: the frozen text tower captions are embedded with, e.g.
    ``load_encoder("minilm")`` (the shipped weights' tower); its embedding size must be
    ``config.tower.embed_dim``. ``cache``: an embedding store (``cotembed.cache.open_cache()``)
    so a rerun reuses the caption embeddings instead of encoding them again (minutes on a CPU).
    """
    import torch

    config = config if config is not None else TrainConfig()
    out = Path(out_dir) if out_dir is not None else default_train_dir()
    dim = getattr(text_encoder, "dim", None)
    if isinstance(dim, int) and dim != config.tower.embed_dim:
        raise InputError(f"text encoder {text_encoder.model_key} gives {dim}-dimensional embeddings; "
                         f"the tower is built for tower.embed_dim={config.tower.embed_dim}")
    with torch_training_state(torch, config.seed, config.threads):
        record = _train(torch, config, out, log, text_encoder, cache)
    return record


def _train(torch: Any, config: TrainConfig, out_dir: Path, log: Callable[[str], None],
           text_encoder: TextEncoder, cache: EmbeddingStore | None) -> dict[str, Any]:
    F = torch.nn.functional
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)

    train_attrs = random_attributes(rng, config.n_train)
    val_attrs = random_attributes(rng, config.n_val)
    size = config.tower.image_size
    train_pixels = torch.from_numpy(render_pool(train_attrs, config.seed * 2 + 1, size, log, "training"))
    val_pixels = torch.from_numpy(render_pool(val_attrs, config.seed * 2 + 2, size, log, "validation"))

    captions = [[caption(attribute_dict(row), rng) for _ in range(config.captions_per_image)] for row in train_attrs]
    unique = sorted({c for cs in captions for c in cs})
    index = {c: i for i, c in enumerate(unique)}
    caption_ids = torch.tensor([[index[c] for c in cs] for cs in captions])
    log(f"embedding {len(unique)} distinct captions with the frozen text tower {text_encoder.model_key} "
        "(minutes on a CPU unless cached) ...")
    caption_emb = torch.from_numpy(embed_cached(unique, text_encoder, cache))
    if caption_emb.shape[1] != config.tower.embed_dim:
        raise InputError(f"text encoder {text_encoder.model_key} gives {caption_emb.shape[1]}-dimensional embeddings; "
                         f"the tower is built for tower.embed_dim={config.tower.embed_dim}")
    caption_mentions = torch.from_numpy(np.stack([mentioned(c) for c in unique]))
    train_attrs_t = torch.from_numpy(train_attrs)
    log(f"embedded {len(unique)} distinct captions with the frozen text tower")

    monitor = {
        a: torch.from_numpy(embed_cached([PROMPTS[a].format(v.caption) for v in VOCABULARY[a]], text_encoder, cache))
        for a in ATTRIBUTE_NAMES
    }

    model = build_tower(config.tower)
    logit_scale = model.get_parameter("logit_scale")  # learned with the tower
    steps_per_epoch = config.n_train // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(config.seed)
    history = []
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(config.n_train, generator=generator)
        running = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            pick = torch.randint(config.captions_per_image, (len(idx),), generator=generator)
            cap = caption_ids[idx, pick]
            pixels = train_pixels[idx]
            flip = torch.rand(len(idx), generator=generator) < 0.5
            pixels = torch.where(flip[:, None, None, None], pixels.flip(3), pixels)
            image_emb = model(pixels)
            text_emb = caption_emb[cap]
            # positives[i, j]: caption j does not contradict image i's attributes
            m = caption_mentions[cap]  # (B, 4)
            a = train_attrs_t[idx]  # (B, 4)
            positives = ((m[None, :, :] == -1) | (m[None, :, :] == a[:, None, :])).all(dim=2).float()
            scale = logit_scale.exp().clamp(max=100.0)
            logits = scale * image_emb @ text_emb.T
            loss_i2t = -(positives / positives.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
            pos_t = positives.T
            loss_t2i = -(pos_t / pos_t.sum(1, keepdim=True) * F.log_softmax(logits.T, dim=1)).sum(1).mean()
            loss = (loss_i2t + loss_t2i) / 2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += loss.item()
        accuracy = attribute_accuracy(model, val_pixels, val_attrs, monitor)
        history.append({"epoch": epoch + 1, "loss": running / steps_per_epoch, "val_attribute_accuracy": accuracy})
        log(
            f"epoch {epoch + 1}/{config.epochs}  loss {running / steps_per_epoch:.3f}  "
            f"scale {logit_scale.exp().item():.1f}  val attribute accuracy "
            + ", ".join(f"{a} {100 * v:.1f}%" for a, v in accuracy.items())
            + f"  [{time.perf_counter() - started:.0f}s]"
        )

    model.eval()
    metadata = {
        "text_tower": f"{text_encoder.model_key} (frozen)",
        "logit_scale": logit_scale.exp().clamp(max=100.0).item(),
        "training": {**asdict(config), "tower": config.tower.to_dict()},
        "distinct_captions": len(unique),
        "history": history,
        "train_seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
    }
    record = save_tower(model, config.tower, out_dir, metadata)
    log(f"saved {out_dir} ({record['size_bytes'] / 1e6:.2f} MB, sha256 {record['sha256'][:12]}) in {metadata['train_seconds']:.0f}s")
    return record


def attribute_accuracy(model: Any, pixels: Any, attrs: np.ndarray, prompt_emb: dict[str, Any]) -> dict[str, float]:
    """Per attribute: how often the most similar monitor prompt is the image's true value."""
    import torch

    model.eval()
    with torch.inference_mode():
        emb = torch.cat([model(pixels[i : i + 256]) for i in range(0, len(pixels), 256)])
    model.train()
    return {
        a: float((emb @ prompt_emb[a].T).argmax(1).numpy().__eq__(attrs[:, k]).mean())
        for k, a in enumerate(ATTRIBUTE_NAMES)
    }
