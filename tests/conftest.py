"""Shared fixtures. Tests never touch the network: the hub is forced offline before
transformers / huggingface_hub are imported, and models are built locally."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte gets a printable character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


def build_tiny_clip(target: Path, *, seed: int = 0) -> Path:
    """Write a tiny random CLIPModel + CLIPProcessor loadable with ``from_pretrained``.

    The tokenizer is character-level byte BPE (no merges), so any text tokenizes without
    downloading a vocabulary. Images are 32x32, embeddings 16-d, logit scale 100 like CLIP.
    """
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    try:
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # pragma: no cover - transformers v4
        from transformers import CLIPImageProcessor as ImageProcessor

    chars = list(_bytes_to_unicode().values())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for ch in chars:
            vocab[ch + suffix] = len(vocab)
    max_len = 40
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_len)
    image_processor = ImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": max_len,
            "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "image_size": 32, "patch_size": 8,
        },
        projection_dim=16,
        logit_scale_init_value=math.log(100.0),
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random CLIP model; use it as ``hf:<dir>`` (offline, ~1 s to build)."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))
