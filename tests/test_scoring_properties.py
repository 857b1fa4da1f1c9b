"""Property-based checks of the scoring invariants (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cotembed.scoring import Scorer, ScoringConfig, group_log_softmax, group_softmax
from cotembed.system import System

finite = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False, width=32)


@st.composite
def grouped_similarities(draw):
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=6))
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    rows = draw(st.integers(1, 5))
    sims = draw(arrays(np.float32, (rows, int(offsets[-1])), elements=finite))
    temperature = draw(st.floats(min_value=0.01, max_value=500.0))
    return sims, offsets, temperature


@settings(max_examples=100, deadline=None)
@given(grouped_similarities())
def test_group_softmax_is_a_distribution_per_group(case):
    sims, offsets, temperature = case
    probs = group_softmax(sims, offsets, temperature)
    assert np.isfinite(probs).all() and (probs >= 0).all()
    sums = np.add.reduceat(probs, offsets[:-1], axis=1)
    np.testing.assert_allclose(sums, 1.0, rtol=1e-5)
    # The argmax within each group is the most similar option (up to float32 resolution at this temperature).
    for g in range(len(offsets) - 1):
        block = slice(offsets[g], offsets[g + 1])
        best = sims[:, block].max(axis=1, keepdims=True)
        chosen = np.take_along_axis(sims[:, block], probs[:, block].argmax(axis=1)[:, None], axis=1)
        np.testing.assert_allclose(chosen, best, atol=1e-6 + 5e-7 / temperature)


@settings(max_examples=100, deadline=None)
@given(grouped_similarities(), st.floats(min_value=-1.0, max_value=1.0))
def test_group_softmax_ignores_a_shift_of_a_whole_group(case, shift):
    sims, offsets, temperature = case
    shifted = sims.copy()
    shifted[:, offsets[0] : offsets[1]] += np.float32(shift)
    np.testing.assert_allclose(group_softmax(shifted, offsets, temperature), group_softmax(sims, offsets, temperature), atol=2e-4)


@settings(max_examples=100, deadline=None)
@given(grouped_similarities())
def test_log_softmax_is_the_log_of_softmax(case):
    sims, offsets, temperature = case
    probs = group_softmax(sims, offsets, temperature)
    logs = group_log_softmax(sims, offsets, temperature)
    assert np.isfinite(logs).all()
    np.testing.assert_allclose(np.exp(logs), probs, atol=1e-5)


def _system(n_groups: int, n_options: int, n_classes: int, seed: int) -> System:
    rng = np.random.default_rng(seed)
    groups = {f"g{g}": {"prompt": f"q{g} {{}}", "options": [f"o{g}_{o}" for o in range(n_options)]} for g in range(n_groups)}
    rules = {f"c{n}": {f"g{g}": int(rng.integers(n_options)) for g in range(n_groups)} for n in range(n_classes)}
    return System.from_dict({"groups": groups, "rules": rules})


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 4), st.integers(0, 1000), st.sampled_from(["cot", "hybrid", "baseline"]))
def test_scores_do_not_depend_on_the_chunk_size(rows, chunk, seed, method):
    """Chunks of 1..4 rows across 1..40 inputs: every boundary position is exercised."""
    system = _system(3, 4, 5, seed)
    rng = np.random.default_rng(seed)
    compiled = system.compile()
    vectors = {"options": rng.normal(size=(compiled.n_prompts, 8)), "names": rng.normal(size=(compiled.n_classes, 8))}
    scorer = Scorer(system, vectors, ScoringConfig(temperature=40.0), ("cot", "hybrid", "baseline"))
    x = rng.normal(size=(rows, 8)).astype(np.float32)
    whole = scorer.scores(x, method, chunk=rows)
    np.testing.assert_allclose(scorer.scores(x, method, chunk=chunk), whole, rtol=1e-5, atol=1e-6)
    row_by_row = np.concatenate([scorer.scores(x[i : i + 1], method) for i in range(rows)])
    np.testing.assert_allclose(row_by_row, whole, rtol=1e-5, atol=1e-6)
