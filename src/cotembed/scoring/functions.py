"""Pure-numpy building blocks: similarities -> per-group softmax -> rule aggregation.

Everything here works on whole batches of embeddings so that B inputs cost one
B x D . D x Q product for the similarities and one B x Q . Q x N product for the
class scores. Nothing in this package imports torch or knows about encoders.
"""

from __future__ import annotations

import numpy as np

DEFAULT_TEMPERATURE = 100.0
"""Used when neither the caller, the system nor the model sets one (CLIP's logit scale)."""


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero) so dot products are cosines."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B, D) x (K, D) -> (B, K) cosine similarities."""
    return l2_normalize(a) @ l2_normalize(b).T


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def group_softmax(similarities: np.ndarray, offsets: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of ``temperature * similarities`` within each contiguous group.

    ``offsets`` has G + 1 entries; group g is columns ``offsets[g]:offsets[g+1]``.
    Vectorised with ``reduceat`` so many small groups cost no Python loop.
    """
    logits = np.array(similarities, dtype=np.float32, copy=True) * np.float32(temperature)
    starts = np.asarray(offsets[:-1])
    sizes = np.diff(offsets)
    group_max = np.maximum.reduceat(logits, starts, axis=1)
    logits -= np.repeat(group_max, sizes, axis=1)
    np.exp(logits, out=logits)
    group_sum = np.add.reduceat(logits, starts, axis=1)
    logits /= np.repeat(group_sum, sizes, axis=1)
    return logits


def group_log_softmax(similarities: np.ndarray, offsets: np.ndarray, temperature: float) -> np.ndarray:
    """Log of :func:`group_softmax`, computed stably (no log of an underflowed zero)."""
    logits = np.array(similarities, dtype=np.float32, copy=True) * np.float32(temperature)
    starts = np.asarray(offsets[:-1])
    sizes = np.diff(offsets)
    logits -= np.repeat(np.maximum.reduceat(logits, starts, axis=1), sizes, axis=1)
    log_sum = np.log(np.add.reduceat(np.exp(logits), starts, axis=1))
    logits -= np.repeat(log_sum, sizes, axis=1)
    return logits


def cot_scores(option_probs: np.ndarray, rule_matrix: np.ndarray) -> np.ndarray:
    """Class score = weighted sum over groups of the probability of the class's option(s)."""
    return option_probs @ rule_matrix


def hybrid_scores(cot: np.ndarray, name_similarities: np.ndarray, temperature: float, weight: float) -> np.ndarray:
    """CoT plus the class-name question as one more weighted group.

    Classes whose rules are identical get identical CoT scores; the baseline
    term (a softmax over class names) breaks the tie without drowning the rules.
    """
    return cot + np.float32(weight) * softmax(name_similarities * np.float32(temperature), axis=1)


def sum_normalize(scores: np.ndarray) -> np.ndarray:
    """Non-negative scores rescaled so each row sums to 1."""
    total = scores.sum(axis=1, keepdims=True)
    return scores / np.maximum(total, 1e-12)
