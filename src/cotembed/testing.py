"""Build randomly initialised transformers CLIP models offline, for tests and benchmarks.

Real weights cannot always be downloaded, but the real ``hf:`` loading path can still
be driven end to end: this saves a CLIPModel with random weights and a byte-level
tokenizer (no merges, so any text tokenizes and nothing is downloaded) exactly as a
hub model is laid out, to be loaded with ``load_encoder("hf:<dir>")``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "patch_size": 8}
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 40}


def _byte_alphabet() -> list[str]:
    """GPT-2/CLIP byte-level alphabet: one printable character per byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return [chr(c) for c in printable] + [chr(256 + i) for i in range(len(extra))]


def build_random_clip(target: Path, vision: dict[str, Any] = TINY_VISION, text: dict[str, Any] = TINY_TEXT,
                      projection_dim: int = 16, image_size: int = 32, seed: int = 0) -> Path:
    """Save a random CLIPModel + CLIPProcessor (resize shortest edge, centre crop) to ``target``."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    try:  # transformers v5 without torchvision
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import CLIPImageProcessor as ImageProcessor

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for ch in _byte_alphabet():
            vocab[ch + suffix] = len(vocab)
    max_len = int(text.get("max_position_embeddings", 77))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_len)
    image_processor = ImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    config = CLIPConfig(
        text_config={**text, "vocab_size": len(vocab), "max_position_embeddings": max_len,
                     "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        vision_config={**vision, "image_size": image_size},
        projection_dim=projection_dim,
        logit_scale_init_value=math.log(100.0),
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(target)
    return target
