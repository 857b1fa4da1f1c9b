"""Few-shot scoring: prototypes, GDA, fusion with the zero-shot prior (numpy only, synthetic clusters)."""

from __future__ import annotations

import numpy as np
import pytest

from cotembed.errors import InputError
from cotembed.scoring._fewshot import (
    FusedClassifier,
    GaussianDiscriminant,
    PrototypeClassifier,
    rescale_to,
)
from cotembed.scoring._functions import softmax

N, D = 8, 24


def clusters(per_class: int, seed: int, spread: float = 1.0, centres_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    centres = np.random.default_rng(centres_seed).normal(size=(N, D))
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(N), per_class)
    return (centres[y] + spread * rng.normal(size=(len(y), D))).astype(np.float32), y


def zero_shot(y: np.ndarray, seed: int, good: np.ndarray, strength: float = 3.0) -> np.ndarray:
    """A prior that knows the classes in ``good`` and is noise on the others."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(y), N))
    rows = np.isin(y, good)
    logits[rows, y[rows]] += strength
    return softmax(logits, axis=1)


def acc(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y))


@pytest.mark.parametrize("model", [PrototypeClassifier(), GaussianDiscriminant()])
def test_separable_clusters_are_learned_from_few_examples(model):
    xs, ys = clusters(3, seed=1, spread=0.8)
    xt, yt = clusters(20, seed=2, spread=0.8)
    assert acc(model.fit(xs, ys, N).predict(xt), yt) > 0.9


def test_prototype_leave_one_out_equals_refitting_without_the_row():
    xs, ys = clusters(3, seed=1)
    model = PrototypeClassifier(temperature=7.0).fit(xs, ys, N)
    loo, defined = model.loo_logits()
    assert defined.all()
    for row in (0, 5, 17):
        keep = np.arange(len(xs)) != row
        refit = PrototypeClassifier(temperature=7.0).fit(xs[keep], ys[keep], N)
        np.testing.assert_allclose(loo[row], refit.decision_function(xs[row : row + 1])[0], rtol=1e-5, atol=1e-5)


def test_gda_leave_one_out_is_close_to_refitting_without_the_row():
    """The own mean is recomputed and the row's scatter taken out of the covariance; only the
    shrinkage target and scale stay as fitted, so it is near the refit, far nearer than the full model."""
    xs, ys = clusters(4, seed=3)
    model = GaussianDiscriminant(0.3).fit(xs, ys, N)
    loo, defined = model.loo_logits()
    assert defined.all()
    for row in (0, 9, 30):
        keep = np.arange(len(xs)) != row
        refit = GaussianDiscriminant(0.3).fit(xs[keep], ys[keep], N).decision_function(xs[row : row + 1])[0]
        full = model.decision_function(xs[row : row + 1])[0]
        assert np.abs(loo[row] - refit).max() < 0.2 * np.abs(full - refit).max()
        assert loo[row].argmax() == refit.argmax()


class SupportOnly:
    """The test set seen by a caller: only its embeddings and zero-shot scores, never its labels."""

    def __init__(self, seed: int):
        self.x, self.y = clusters(20, seed=seed)
        self.p0 = zero_shot(self.y, seed, good=np.arange(4))


def test_fusion_weight_depends_on_the_support_set_alone():
    xs, ys = clusters(4, seed=1)
    ps = zero_shot(ys, 11, good=np.arange(4))
    first = FusedClassifier().fit(xs, ys, ps)
    test = SupportOnly(seed=5)
    first.predict(test.x, test.p0)
    test.y = np.random.default_rng(0).permutation(test.y)  # permuted test labels: nothing may change
    second = FusedClassifier().fit(xs, ys, ps)
    assert second.weight_ == first.weight_ and second.loo_accuracy_ == first.loo_accuracy_
    np.testing.assert_array_equal(second.predict_proba(test.x, test.p0), first.predict_proba(test.x, test.p0))
    assert first.weight_source_.startswith("leave-one-out on 32")
    # Changing only the support's labels does change the choice's evidence.
    shuffled = FusedClassifier().fit(xs, np.random.default_rng(1).permutation(ys), ps)
    assert shuffled.loo_accuracy_ != first.loo_accuracy_


@pytest.mark.parametrize("base", ["prototype", "gda"])
def test_fused_is_at_least_as_good_as_either_part_when_they_know_different_classes(base):
    xs, ys = clusters(4, seed=1, spread=2.2)
    xt, yt = clusters(40, seed=2, spread=2.2)
    good = np.arange(N // 2)  # the prior knows half the classes; the examples are noisy everywhere
    ps, pt = zero_shot(ys, 3, good, strength=4.0), zero_shot(yt, 4, good, strength=4.0)
    few = (PrototypeClassifier() if base == "prototype" else GaussianDiscriminant()).fit(xs, ys, N)
    fused = FusedClassifier(base).fit(xs, ys, ps)
    parts = max(acc(pt.argmax(1), yt), acc(few.predict(xt), yt))
    assert 0 < fused.weight_ < 1
    assert acc(fused.predict(xt, pt), yt) >= parts + 0.03


def test_weight_zero_and_one_reproduce_the_parts():
    xs, ys = clusters(3, seed=1)
    xt, yt = clusters(10, seed=2)
    ps, pt = zero_shot(ys, 3, np.arange(N)), zero_shot(yt, 4, np.arange(N))
    prior_only = FusedClassifier(weights=[0.0]).fit(xs, ys, ps)
    np.testing.assert_allclose(prior_only.predict_proba(xt, pt), pt, atol=1e-9)
    few_only = FusedClassifier(weights=[1.0]).fit(xs, ys, ps)
    np.testing.assert_array_equal(few_only.predict(xt, pt), GaussianDiscriminant().fit(xs, ys, N).predict(xt))


def test_one_example_per_class_weighs_the_examples_by_the_priors_error_rate():
    xs, ys = clusters(1, seed=1)
    guess = np.where(ys < 6, ys, (ys + 1) % N)  # right on 6 of 8 examples
    prior = softmax(3.0 * np.eye(N)[guess], axis=1)
    fused = FusedClassifier().fit(xs, ys, prior)
    assert fused.n_loo_ == 0 and fused.prior_support_accuracy_ == 0.75 and fused.weight_ == 0.25
    assert fused.weight_source_.startswith("the prior's error rate")
    fixed = FusedClassifier(default_weight=0.6).fit(xs, ys, prior)
    assert fixed.weight_ == 0.6 and fixed.weight_source_.startswith("default_weight")


def test_classes_without_examples_keep_their_zero_shot_probability():
    xs, ys = clusters(3, seed=1)
    keep = ys < 5  # classes 5, 6, 7 have no examples
    xt, yt = clusters(10, seed=2)
    pt = zero_shot(yt, 4, np.arange(N))
    for model in (PrototypeClassifier().fit(xs[keep], ys[keep], N), GaussianDiscriminant().fit(xs[keep], ys[keep], N)):
        assert list(model.has_examples_) == [True] * 5 + [False] * 3
        p = model.predict_proba(xt, pt)
        np.testing.assert_allclose(p[:, 5:], pt[:, 5:], rtol=1e-9)
        np.testing.assert_allclose(p.sum(axis=1), 1.0)
        assert acc(p.argmax(1)[yt < 5], yt[yt < 5]) > 0.6
        with pytest.raises(InputError, match="3 class\\(es\\) have no examples"):
            model.predict_proba(xt)
    fused = FusedClassifier().fit(xs[keep], ys[keep], zero_shot(ys[keep], 3, np.arange(N)))
    np.testing.assert_allclose(fused.predict_proba(xt, pt)[:, 5:], pt[:, 5:], rtol=1e-9)


def test_everything_is_deterministic():
    xs, ys = clusters(4, seed=1)
    xt, _ = clusters(10, seed=2)
    ps, pt = zero_shot(ys, 3, np.arange(4)), zero_shot(np.repeat(np.arange(N), 10), 4, np.arange(4))
    runs = [FusedClassifier(base).fit(xs, ys, ps).scores(xt, pt, 3 * pt) for base in ("gda", "gda", "prototype", "prototype")]
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[2], runs[3])


def test_scores_live_in_the_zero_shot_range_and_keep_the_ranking():
    xs, ys = clusters(3, seed=1)
    xt, yt = clusters(10, seed=2)
    ps, pt = zero_shot(ys, 3, np.arange(N)), zero_shot(yt, 4, np.arange(N))
    reference = 2.0 + 3.0 * pt  # e.g. CoT scores: sums of probabilities
    fused = FusedClassifier().fit(xs, ys, ps)
    scores = fused.scores(xt, pt, reference)
    assert scores.min() == pytest.approx(reference.min(), abs=1e-5)
    assert scores.max() == pytest.approx(reference.max(), abs=1e-5)
    np.testing.assert_array_equal(scores.argmax(1), fused.predict(xt, pt))
    flat = rescale_to(np.zeros((3, 4)), reference[:3, :4])
    assert np.ptp(flat) == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: PrototypeClassifier().fit(np.full((2, 3), np.nan), [0, 1], 2), "NaN"),
        (lambda: PrototypeClassifier().fit(np.ones((2, 3)), [0, 1, 1], 2), "2 embeddings but 3 labels"),
        (lambda: GaussianDiscriminant().fit(np.ones((2, 3)), [0, 2], 2), "0..1"),
        (lambda: GaussianDiscriminant(shrinkage=0).fit(np.ones((2, 3)), [0, 1], 2), "shrinkage"),
        (lambda: FusedClassifier(base="knn").fit(np.ones((2, 3)), [0, 1], np.ones((2, 2)) / 2), "unknown base 'knn'"),
        (lambda: FusedClassifier(weights=[1.5]).fit(np.ones((2, 3)), [0, 1], np.ones((2, 2)) / 2), "weights"),
        (lambda: FusedClassifier().fit(np.ones((2, 3)), [0, 1], np.ones((3, 2))), "expected shape \\(2, 2\\)"),
        (lambda: FusedClassifier().fit(np.ones((2, 3)), [0, 1], np.array([[np.inf, 0], [0, 1]])), "infinite"),
        (lambda: PrototypeClassifier().predict(np.ones((1, 3))), "not fitted"),
    ],
)
def test_bad_input_is_an_input_error(call, message):
    with pytest.raises(InputError, match=message):
        call()
