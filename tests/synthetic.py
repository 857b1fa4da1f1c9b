"""Synthetic worlds for scoring tests: texts embed to hashed random directions, and an
input of a class is the sum of its options' prompt vectors plus noise, so the system's
rules are true of the data while class names and random words carry nothing."""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from cotembed._embeddings import EmbeddingSet
from cotembed.system import System

DIM = 64


def hashed_embed(texts: Sequence[str]) -> np.ndarray:
    """A deterministic text 'encoder': each text is a unit vector seeded by its hash."""
    rows = []
    for text in texts:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).normal(size=DIM)
        rows.append(v / np.linalg.norm(v))
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), DIM)


def random_system(rng: np.random.Generator, groups: int = 4, options: int = 5, classes: int = 12,
                  multi: bool = False, weights: Sequence[float] | None = None) -> System:
    """Random rules; with ``multi`` some classes accept two options of a group."""
    spec = {
        f"g{g}": {"prompt": f"question {g} is {{}}.", "options": [f"opt{g}x{o}" for o in range(options)],
                  "weight": float(weights[g]) if weights else 1.0}
        for g in range(groups)
    }
    rules = {}
    codes = rng.choice(options**groups, size=classes, replace=False)  # distinct rules: no two classes tie at k = G
    for n, code in enumerate(codes):
        rule: dict[str, object] = {}
        for g in range(groups):
            option = int(code) // options**g % options
            if multi and rng.random() < 0.3:
                rule[f"g{g}"] = sorted({option, (option + 1 + int(rng.integers(options - 1))) % options})
            else:
                rule[f"g{g}"] = option
        rules[f"class{n:02d}"] = rule
    return System.from_dict({"name": "synthetic", "groups": spec, "rules": rules})


def synthetic_set(system: System, per_class: int, rng: np.random.Generator, noise: float = 0.3) -> EmbeddingSet:
    """Inputs whose embedding is the mean of their class's (first) option prompts, plus noise."""
    compiled = system.compile()
    vectors = hashed_embed(compiled.prompts)
    rows, labels = [], []
    for n, name in enumerate(compiled.class_names):
        accepted = np.flatnonzero(compiled.rule_matrix[:, n] > 0)
        firsts = [accepted[(accepted >= a) & (accepted < b)][0] for a, b in zip(compiled.offsets[:-1], compiled.offsets[1:])]
        centre = vectors[firsts].mean(axis=0)
        for _ in range(per_class):
            rows.append(centre + noise * rng.normal(size=DIM) / np.sqrt(DIM))
            labels.append(name)
    x = np.asarray(rows, dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return EmbeddingSet(x, [f"input{i}" for i in range(len(x))], labels, "test:hashed")
