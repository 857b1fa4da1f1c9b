"""The blocked group softmax (row-maximum shift, redone per group where that would
underflow) against a float64 per-group reference, on every layout it special-cases."""

from __future__ import annotations

import numpy as np
import pytest

from cotembed.scoring import _functions as functions
from cotembed.scoring._functions import group_log_softmax, group_softmax

LAYOUTS = {
    "equal sizes": np.arange(0, 101, 10),
    "unequal sizes": np.array([0, 3, 7, 8, 20]),
    "one option per group": np.arange(0, 6),
    "one group": np.array([0, 9]),
}


def reference(sims: np.ndarray, offsets: np.ndarray, temperature: float, log: bool) -> np.ndarray:
    """Per group, in float64, from the same float32 logits the function sees."""
    logits = (sims * np.float32(temperature)).astype(np.float64)
    out = np.empty_like(logits)
    for g in range(len(offsets) - 1):
        block = logits[:, offsets[g] : offsets[g + 1]]
        block = block - block.max(axis=1, keepdims=True)
        lse = np.log(np.exp(block).sum(axis=1, keepdims=True))
        out[:, offsets[g] : offsets[g + 1]] = block - lse if log else np.exp(block - lse)
    return out


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("temperature", [0.05, 1.0, 100.0, 1000.0])
def test_matches_the_per_group_reference(layout, temperature):
    offsets = LAYOUTS[layout]
    rng = np.random.default_rng(7)
    # More rows than one block, and a block boundary that is not a multiple of it.
    sims = rng.uniform(-1, 1, (functions.GROUP_SOFTMAX_ROWS * 2 + 37, int(offsets[-1]))).astype(np.float32)
    sims[::5, : offsets[1]] += 1.5  # in some rows the first group is far above every other
    sims[1::5] = -np.abs(sims[1::5]) - 0.5  # rows whose best logit is far below zero
    with np.errstate(divide="raise", invalid="raise"):  # no 0/0 or log(0) on the way
        probs = group_softmax(sims, offsets, temperature)
        logs = group_log_softmax(sims, offsets, temperature)
    np.testing.assert_allclose(probs, reference(sims, offsets, temperature, log=False), atol=2e-6)
    np.testing.assert_allclose(np.exp(logs), reference(sims, offsets, temperature, log=False), atol=2e-6)
    assert np.isfinite(logs).all()
    sums = np.add.reduceat(probs, offsets[:-1], axis=1)
    np.testing.assert_allclose(sums, 1.0, rtol=1e-5)


def test_groups_far_below_the_rows_best_keep_full_precision():
    """Shifting by the row's maximum would underflow the second group to 0/0 here;
    those rows are redone with each group's own maximum."""
    offsets = np.array([0, 2, 4])
    sims = np.array([[1.0, 0.9, -1.0, -0.99], [0.1, 0.2, 0.1, 0.3]], dtype=np.float32)
    probs = group_softmax(sims, offsets, 500.0)
    logs = group_log_softmax(sims, offsets, 500.0)
    expected = reference(sims, offsets, 500.0, log=False)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(logs, reference(sims, offsets, 500.0, log=True), rtol=1e-5, atol=1e-5)
    assert probs[0, 3] > 0.99  # the far group's own distribution, not 0/0


def test_input_layout_and_dtype_do_not_matter():
    offsets = LAYOUTS["equal sizes"]
    rng = np.random.default_rng(3)
    sims = rng.uniform(-1, 1, (300, int(offsets[-1])))
    expected = group_softmax(sims.astype(np.float32), offsets, 30.0)
    np.testing.assert_allclose(group_softmax(np.asfortranarray(sims), offsets, 30.0), expected, rtol=1e-6)
    np.testing.assert_allclose(group_softmax(sims[::-1].copy()[::-1], offsets, 30.0), expected, rtol=1e-6)
    assert group_softmax(sims, offsets, 30.0).dtype == np.float32
    # The input is never modified (a Batch shares its similarities between methods).
    before = sims.copy()
    group_softmax(sims, offsets, 30.0)
    group_log_softmax(sims, offsets, 30.0)
    np.testing.assert_array_equal(sims, before)


def test_empty_batch():
    offsets = LAYOUTS["unequal sizes"]
    assert group_softmax(np.zeros((0, int(offsets[-1])), np.float32), offsets, 10.0).shape == (0, int(offsets[-1]))
