"""Benchmarks share the package's offline random-CLIP builder; the hub stays offline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from cotembed.testing import build_random_clip

__all__ = ["build_random_clip"]
