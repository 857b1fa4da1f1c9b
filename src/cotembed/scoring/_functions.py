"""Pure-numpy building blocks: similarities -> per-group softmax -> rule aggregation.

Everything here works on whole batches of embeddings so that B inputs cost one
B x D . D x Q product for the similarities and one B x Q . Q x N product for the
class scores. Nothing in this package imports torch or knows about encoders.
"""

from __future__ import annotations

import functools

import numpy as np

DEFAULT_TEMPERATURE = 100.0
"""Used when neither the caller, the system nor the model sets one (CLIP's logit scale)."""


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero) so dot products are cosines."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.einsum("...i,...i->...", x, x)[..., None]  # no squared copy of x, unlike linalg.norm
    np.sqrt(norms, out=norms)
    normalized: np.ndarray = x / np.maximum(norms, np.float32(1e-12))
    return normalized


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B, D) x (K, D) -> (B, K) cosine similarities."""
    cosines: np.ndarray = l2_normalize(a) @ l2_normalize(b).T
    return cosines


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    probs: np.ndarray = e / e.sum(axis=axis, keepdims=True)
    return probs


GROUP_SOFTMAX_ROWS = 256
"""Rows per block inside the group softmax: a (rows, Q) float32 block stays in the CPU's
cache through its passes (exp, group sums, divide) instead of streaming through memory."""

_SUM_RANGE = (np.float32(1e-15), np.float32(np.finfo(np.float32).max))
"""A group whose exponentials sum outside this range (overflow, or underflow that would
cost precision) is recomputed shifted by its own maximum."""


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


@functools.lru_cache(maxsize=64)
def _group_indicator(sizes: tuple[int, ...]) -> np.ndarray:
    """(Q, G) float32 matrix with a 1 where column q belongs to group g (read-only, cached per layout)."""
    columns = np.repeat(np.arange(len(sizes)), sizes)
    indicator = np.zeros((len(columns), len(sizes)), dtype=np.float32)
    indicator[np.arange(len(columns)), columns] = 1
    indicator.flags.writeable = False
    return indicator


def _group_sums(block: np.ndarray, starts: np.ndarray, sizes: np.ndarray, ones: np.ndarray | None) -> np.ndarray:
    """(rows, G) sums of each group: equal-sized groups (``ones`` of their size given) as
    one matrix-vector product, groups of different sizes as a product with a (Q, G)
    group-indicator matrix; both several times faster than a segmented ``reduceat``.
    (The fused path of :class:`cotembed.scoring.Scorer` sums the same way, so both give
    the same bits.)"""
    if ones is not None:
        sums: np.ndarray = (block.reshape(-1, len(ones)) @ ones).reshape(len(block), len(sizes))
        return sums
    grouped: np.ndarray = block @ _group_indicator(tuple(int(n) for n in sizes))
    return grouped


def _exact_block(logits: np.ndarray, starts: np.ndarray, sizes: np.ndarray, equal: bool, log: bool) -> None:
    """In place: each group shifted by its own maximum (always stable, slower)."""
    _per_group(np.subtract, logits, np.maximum.reduceat(logits, starts, axis=1), sizes, equal)
    if log:
        _per_group(np.subtract, logits, np.log(np.add.reduceat(np.exp(logits), starts, axis=1)), sizes, equal)
    else:
        np.exp(logits, out=logits)
        _per_group(np.divide, logits, np.add.reduceat(logits, starts, axis=1), sizes, equal)


def _fast_block(logits: np.ndarray, starts: np.ndarray, sizes: np.ndarray, ones: np.ndarray | None, log: bool,
                shift: bool, work: np.ndarray) -> np.ndarray | None:
    """In place: the logits exponentiated as they are (``shift``: less the row's maximum),
    summed per group and normalised. Returns the logits of the rows to redo with
    :func:`_exact_block` (taken before they were overwritten; None when there are none).

    Softmax is shift-invariant, so skipping the per-group maximum is exact whenever no
    group's exponentials overflow or underflow, which the group sums show afterwards
    (cosines at CLIP-like temperatures never come near). That saves a segmented
    reduction and a spread per block: three passes over the block instead of five.
    The exponentials go to ``work`` (a scratch block of the same shape), so the logits
    survive until the rows to redo are known.
    """
    row_max = logits.max(axis=1, keepdims=True) if shift else None
    if row_max is not None:
        exp = np.exp(np.subtract(logits, row_max, out=work), out=work)
    else:
        exp = np.exp(logits, out=work)
    sums = _group_sums(exp, starts, sizes, ones)
    low, high = _SUM_RANGE
    redo = None
    if not (sums.min() >= low and sums.max() <= high):  # also true for NaN
        bad = np.asarray(~((sums >= low) & (sums <= high)).all(axis=1))
        redo = (bad, logits[bad])
        sums = np.nan_to_num(np.clip(sums, low, high), nan=1.0)  # no 0/0, inf/inf or log(0) in rows redone anyway
    if log:
        if row_max is not None:
            logits -= row_max
        _per_group(np.subtract, logits, np.log(sums), sizes, ones is not None)
    else:
        _spread_divide(exp, sums, sizes, ones is not None, logits)
    return redo  # type: ignore[return-value]


def _spread_divide(exp: np.ndarray, sums: np.ndarray, sizes: np.ndarray, equal: bool, out: np.ndarray) -> None:
    """``out = exp / sums`` with each group's sum spread over its columns."""
    if equal:
        np.divide(exp.reshape(len(exp), len(sizes), -1), sums[:, :, None], out=out.reshape(len(out), len(sizes), -1))
    else:
        np.divide(exp, np.repeat(sums, sizes, axis=1), out=out)


def _group_normalize(similarities: np.ndarray, offsets: np.ndarray, temperature: float, log: bool,
                     out: np.ndarray | None = None, row_scale: np.ndarray | None = None) -> np.ndarray:
    """Blocked group (log-)softmax of ``temperature * row_scale * similarities`` into ``out``.

    Every pass (scale, exp, group sums, normalise) runs on one block of rows while it
    sits in the CPU's cache. ``out`` may be ``similarities`` itself (in place: no B x Q
    allocation besides one scratch block).
    """
    sims = np.asarray(similarities, dtype=np.float32)
    logits = np.empty(sims.shape, dtype=np.float32) if out is None else out  # C order: row blocks reshape to views
    scale = np.float32(temperature)
    starts, sizes, equal = _group_layout(offsets)
    ones = np.ones(int(sizes[0]), dtype=np.float32) if equal else None
    shift = log  # log-probabilities keep full precision only near zero: shift them by the row's maximum
    work = np.empty((min(GROUP_SOFTMAX_ROWS, len(sims)), sims.shape[1]), dtype=np.float32)
    already_logits = logits is sims and row_scale is None and scale == 1  # in place at temperature 1: nothing to scale
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # an overflowed group sums to inf (or inf x 0 = NaN): redone
        for first in range(0, len(logits), GROUP_SOFTMAX_ROWS):
            rows = slice(first, first + GROUP_SOFTMAX_ROWS)
            block = logits[rows]
            factor = scale if row_scale is None else (row_scale[rows, None] * scale).astype(np.float32, copy=False)
            if not already_logits:
                np.multiply(sims[rows], factor, out=block)
            redo = _fast_block(block, starts, sizes, ones, log, shift, work[: len(block)])
            if redo is not None and redo[0].any():
                bad, again = redo
                # Mostly overflow (a high temperature): shift the next blocks by the row's maximum.
                shift = shift or bool(bad.mean() > 0.125)
                again = np.ascontiguousarray(again, dtype=np.float32)
                _exact_block(again, starts, sizes, equal, log)
                block[bad] = again
    return logits


def group_softmax(similarities: np.ndarray, offsets: np.ndarray, temperature: float, *, out: np.ndarray | None = None,
                  row_scale: np.ndarray | None = None) -> np.ndarray:
    """Softmax of ``temperature * similarities`` within each contiguous group.

    ``offsets`` has G + 1 entries; group g is columns ``offsets[g]:offsets[g+1]``.
    Vectorised (no Python loop over groups) and blocked by rows, so it costs a small
    fraction of the two matrix products around it (``bench_scoring.py`` measures it).
    ``out``: where to write (``similarities`` itself works: in place); ``row_scale``: a
    (B,) factor per row on top of the temperature (e.g. 1 / |x| for unnormalised inputs).
    """
    return _group_normalize(similarities, offsets, temperature, log=False, out=out, row_scale=row_scale)


def group_log_softmax(similarities: np.ndarray, offsets: np.ndarray, temperature: float) -> np.ndarray:
    """Log of :func:`group_softmax`, computed stably (no log of an underflowed zero)."""
    return _group_normalize(similarities, offsets, temperature, log=True)


def cot_scores(option_probs: np.ndarray, rule_matrix: np.ndarray) -> np.ndarray:
    """Class score = weighted sum over groups of the probability of the class's option(s)."""
    scores: np.ndarray = option_probs @ rule_matrix
    return scores


def hybrid_scores(cot: np.ndarray, name_similarities: np.ndarray, temperature: float, weight: float) -> np.ndarray:
    """CoT plus the class-name question as one more weighted group.

    Classes whose rules are identical get identical CoT scores; the baseline
    term (a softmax over class names) breaks the tie without drowning the rules.
    """
    return cot + np.float32(weight) * softmax(name_similarities * np.float32(temperature), axis=1)


def sum_normalize(scores: np.ndarray) -> np.ndarray:
    """Non-negative scores rescaled so each row sums to 1."""
    total = scores.sum(axis=1, keepdims=True)
    normalized: np.ndarray = scores / np.maximum(total, 1e-12)
    return normalized
