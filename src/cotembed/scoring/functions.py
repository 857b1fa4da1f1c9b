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


GROUP_SOFTMAX_ROWS = 256
"""Rows per block inside the group softmax: a (rows, Q) float32 block stays in the CPU's
cache through its five passes (shift, exp, group sums, divide) instead of streaming
through memory five times."""

_SHIFT_FLOOR = np.float32(1e-15)
"""A group whose exponentials, shifted by the row's maximum, sum below this (its best
logit is more than ~34 below the row's best) is recomputed with its own maximum, so no
group loses precision to underflow."""


def _group_layout(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Group starts, sizes, and whether every group has the same size."""
    starts = np.asarray(offsets[:-1], dtype=np.intp)
    sizes = np.diff(np.asarray(offsets, dtype=np.intp))
    return starts, sizes, len(sizes) > 0 and bool((sizes == sizes[0]).all())


def _per_group(op: np.ufunc, block: np.ndarray, values: np.ndarray, sizes: np.ndarray, equal: bool) -> None:
    """``block op= values`` with (rows, G) ``values`` spread over each group's columns:
    a broadcast through a (rows, G, size) view when the groups share one size (no
    temporary), a repeat otherwise."""
    if equal:
        view = block.reshape(len(block), len(sizes), -1)
        op(view, values[:, :, None], out=view)
    else:
        op(block, np.repeat(values, sizes, axis=1), out=block)


def _exact_block(logits: np.ndarray, starts: np.ndarray, sizes: np.ndarray, equal: bool, log: bool) -> None:
    """In place: each group shifted by its own maximum (always stable, slower)."""
    _per_group(np.subtract, logits, np.maximum.reduceat(logits, starts, axis=1), sizes, equal)
    if log:
        _per_group(np.subtract, logits, np.log(np.add.reduceat(np.exp(logits), starts, axis=1)), sizes, equal)
    else:
        np.exp(logits, out=logits)
        _per_group(np.divide, logits, np.add.reduceat(logits, starts, axis=1), sizes, equal)


def _fast_block(logits: np.ndarray, starts: np.ndarray, sizes: np.ndarray, equal: bool, log: bool) -> np.ndarray:
    """In place: every group shifted by the row's maximum (one contiguous reduction and
    a broadcast, where per-group maxima cost a segmented reduction and a spread).
    Softmax is shift-invariant, so this is exact unless a group lies so far below the
    row's best that its exponentials underflow: the rows where that happens are
    returned, to be redone with :func:`_exact_block`."""
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits) if log else np.exp(logits, out=logits)
    sums = np.add.reduceat(exp, starts, axis=1)
    low = np.asarray((sums < _SHIFT_FLOOR).any(axis=1))
    if low.any():
        sums = np.maximum(sums, _SHIFT_FLOOR)  # no 0/0 or log(0) in rows that are redone anyway
    if log:
        _per_group(np.subtract, logits, np.log(sums), sizes, equal)
    else:
        _per_group(np.divide, logits, sums, sizes, equal)
    return low


def _group_normalize(similarities: np.ndarray, offsets: np.ndarray, temperature: float, log: bool) -> np.ndarray:
    sims = np.asarray(similarities, dtype=np.float32)
    scale = np.float32(temperature)
    logits = np.empty(sims.shape, dtype=np.float32)  # C order: row blocks reshape to views
    np.multiply(sims, scale, out=logits)
    starts, sizes, equal = _group_layout(offsets)
    for first in range(0, len(logits), GROUP_SOFTMAX_ROWS):
        rows = slice(first, first + GROUP_SOFTMAX_ROWS)
        low = _fast_block(logits[rows], starts, sizes, equal, log)
        if low.any():
            redo = np.ascontiguousarray(sims[rows][low] * scale, dtype=np.float32)
            _exact_block(redo, starts, sizes, equal, log)
            logits[rows][low] = redo
    return logits


def group_softmax(similarities: np.ndarray, offsets: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of ``temperature * similarities`` within each contiguous group.

    ``offsets`` has G + 1 entries; group g is columns ``offsets[g]:offsets[g+1]``.
    Vectorised (no Python loop over groups) and blocked by rows, so it costs a small
    fraction of the two matrix products around it (``bench_speed.py`` measures it).
    """
    return _group_normalize(similarities, offsets, temperature, log=False)


def group_log_softmax(similarities: np.ndarray, offsets: np.ndarray, temperature: float) -> np.ndarray:
    """Log of :func:`group_softmax`, computed stably (no log of an underflowed zero)."""
    return _group_normalize(similarities, offsets, temperature, log=True)


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
