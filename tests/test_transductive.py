"""Label-free refinement of a zero-shot posterior on a batch (numpy only, synthetic clusters)."""

from __future__ import annotations

import numpy as np
import pytest

from cotembed.errors import InputError
from cotembed.scoring._functions import softmax
from cotembed.scoring._transductive import TransductiveRefiner, refine

N, D = 10, 32


def batch(per_class: int, seed: int = 0, prior_strength: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clustered embeddings and a weak, noisy zero-shot posterior (right about a third of the time)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N, D))
    y = np.repeat(np.arange(N), per_class)
    x = (centres[y] + 0.9 * rng.normal(size=(len(y), D))).astype(np.float32)
    logits = rng.normal(size=(len(y), N))
    logits[np.arange(len(y)), y] += prior_strength
    return x, y, softmax(logits, axis=1)


def acc(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(p.argmax(1) == y))


def test_refinement_lifts_a_weak_prior_without_labels():
    x, y, p0 = batch(30)
    refiner = TransductiveRefiner().fit(x, p0)
    assert refiner.refined_ and refiner.note_ is None
    assert acc(refiner.predict_proba(), y) >= acc(p0, y) + 0.2
    np.testing.assert_allclose(refiner.predict_proba().sum(axis=1), 1.0)


def test_it_stops_on_convergence():
    x, _, p0 = batch(30)
    refiner = TransductiveRefiner(max_iter=200, tol=1e-6).fit(x, p0)
    assert refiner.converged_ and refiner.n_iter_ < 200
    capped = TransductiveRefiner(max_iter=2, tol=1e-12).fit(x, p0)
    assert capped.n_iter_ == 2 and not capped.converged_


def test_full_anchor_keeps_the_zero_shot_decisions():
    x, _, p0 = batch(20)
    refined = TransductiveRefiner(anchor=1.0, balance=0.0).fit(x, p0).predict_proba()
    np.testing.assert_array_equal(refined.argmax(1), p0.argmax(1))


def test_balance_spreads_the_mass_over_classes():
    x, _, p0 = batch(20)
    skewed = p0 * np.where(np.arange(N) == 0, 8.0, 1.0)  # a prior that favours class 0 everywhere
    skewed /= skewed.sum(axis=1, keepdims=True)
    share = {b: TransductiveRefiner(balance=b).fit(x, skewed).predict_proba().argmax(1) for b in (0.0, 1.0)}
    assert np.mean(share[1.0] == 0) < np.mean(share[0.0] == 0)


def test_a_batch_too_small_falls_back_to_the_zero_shot_scores_with_a_note():
    x, _, p0 = batch(1)  # 10 inputs for 10 classes: 1 per class
    scores = 5 * p0
    refiner = TransductiveRefiner().fit(x, p0)
    assert not refiner.refined_
    assert "batch too small to refine: 10 input(s) for 10 classes" in str(refiner.note_)
    np.testing.assert_allclose(refiner.predict_proba(), p0, rtol=1e-9)
    np.testing.assert_array_equal(refiner.scores(scores), scores.astype(np.float32))
    assert TransductiveRefiner().fit(*batch(2)[::2]).refined_  # 2 per class: refined


def test_deterministic_and_scores_in_the_zero_shot_range():
    x, _, p0 = batch(15, seed=3)
    first, second = refine(x, p0), refine(x, p0)
    np.testing.assert_array_equal(first, second)
    reference = 1.0 + 4.0 * p0
    scores = TransductiveRefiner().fit(x, p0).scores(reference)
    assert scores.min() == pytest.approx(reference.min(), abs=1e-5)
    assert scores.max() == pytest.approx(reference.max(), abs=1e-5)
    np.testing.assert_array_equal(scores.argmax(1), first.argmax(1))


@pytest.mark.parametrize(
    ("params", "args", "message"),
    [
        ({"anchor": 1.5}, None, "anchor must be a number in \\[0, 1\\]"),
        ({"sharpness": 0}, None, "sharpness"),
        ({"max_iter": 0}, None, "max_iter"),
        ({"shrinkage": -0.1}, None, "shrinkage must be a number in \\[0, 1\\]"),
        ({}, (np.full((4, 3), np.nan), np.ones((4, 2)) / 2), "NaN"),
        ({}, (np.ones((4, 3)), np.ones((3, 2)) / 2), "expected shape \\(4, 2\\)"),
    ],
)
def test_bad_input_is_an_input_error(params, args, message):
    x, _, p0 = batch(3)
    with pytest.raises(InputError, match=message):
        TransductiveRefiner(**params).fit(*(args or (x, p0)))


def test_the_shared_variance_discounts_dimensions_in_which_classes_spread():
    """Classes apart in a few dimensions, wide noise in the others: a per-dimension variance
    (shrinkage 0) tells them apart better than a spherical one (shrinkage 1, cosine-like)."""
    rng = np.random.default_rng(5)
    per_class, informative = 40, 4
    y = np.repeat(np.arange(N), per_class)
    centres = np.zeros((N, D))
    centres[:, :informative] = 3.0 * rng.normal(size=(N, informative))
    noise = rng.normal(size=(len(y), D))
    noise[:, informative:] *= 2.5
    x = (centres[y] + noise).astype(np.float32)
    logits = rng.normal(size=(len(y), N))
    logits[np.arange(len(y)), y] += 1.0
    p0 = softmax(logits, axis=1)
    per_dimension = acc(TransductiveRefiner(shrinkage=0.0).fit(x, p0).predict_proba(), y)
    spherical = acc(TransductiveRefiner(shrinkage=1.0).fit(x, p0).predict_proba(), y)
    assert per_dimension >= spherical + 0.05
    assert per_dimension >= acc(p0, y) + 0.2


def test_transform_repeats_the_last_step_on_any_chunking():
    x, _, p0 = batch(12, seed=7)
    refiner = TransductiveRefiner().fit(x, p0)
    chunks = np.concatenate([refiner.transform(x[i:i + 17], p0[i:i + 17]) for i in range(0, len(x), 17)])
    np.testing.assert_allclose(chunks, refiner.predict_proba(), atol=1e-5)
