"""Calibrated posteriors, open-set scores, split conformal sets and multi-label scoring.

The data are drawn from a generative model where the product-of-groups posterior is
exactly right at a known temperature: class y uniform; in each group the option y's
rule accepts has cosine mu + noise, every other option noise (sigma). Then
log p(y | x) = (mu / sigma^2) sum_g cos(rule option) + const, so the true temperature
is mu / sigma^2 and a fit started far from it must find it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from tests.synthetic import hashed_embed, random_system, synthetic_set

from cotembed.errors import InputError
from cotembed.scoring import Scorer, ScoringConfig
from cotembed.scoring import _calibration as cal
from cotembed.scoring import _conformal as conformal
from cotembed.scoring import _multilabel as multilabel
from cotembed.scoring import _openset as openset

MU, SIGMA = 0.2, 0.15
TRUE_T = MU / SIGMA**2  # 8.9: about 70 % of the inputs right
CLEAR_MU, CLEAR_SIGMA = 0.3, 0.12
CLEAR_T = CLEAR_MU / CLEAR_SIGMA**2


def world(groups: int = 4, options: int = 5, classes: int = 15) -> cal.GroupRules:
    rng = np.random.default_rng(0)
    codes = rng.choice(options**groups, size=classes, replace=False)
    accepted = np.zeros((groups * options, classes))
    for n, code in enumerate(codes):
        for g in range(groups):
            accepted[g * options + int(code) // options**g % options, n] = 1
    return cal.GroupRules(np.arange(0, groups * options + 1, options), accepted, np.ones(groups),
                          tuple(f"g{g}" for g in range(groups)), tuple(f"c{n}" for n in range(classes)))


def draw(rules: cal.GroupRules, n: int, seed: int, noisy_group: int | None = None,
         classes: np.ndarray | None = None, mu: float = MU, sigma: float = SIGMA) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pool = np.arange(rules.accepted.shape[1]) if classes is None else classes
    y = rng.choice(pool, size=n)
    sims = sigma * rng.normal(size=(n, rules.accepted.shape[0]))
    signal = mu * rules.accepted[:, y].T
    if noisy_group is not None:
        signal[:, rules.offsets[noisy_group]:rules.offsets[noisy_group + 1]] = 0
    return (sims + signal).astype(np.float32), y


# --------------------------------------------------------------- posterior
def test_product_posterior_is_cot_log_normalised() -> None:
    system = random_system(np.random.default_rng(3), multi=True)
    data = synthetic_set(system, 4, np.random.default_rng(4))
    scorer = Scorer.build(system, hashed_embed, ScoringConfig(30.0), ("cot-log",))
    sims = scorer.batch(data.embeddings)["options"]
    mine = cal.product_posterior(sims, cal.GroupRules.from_compiled(scorer.compiled), 30.0)
    np.testing.assert_allclose(mine, scorer.probabilities(data.embeddings, "cot-log"), atol=2e-5)


def test_fit_finds_the_true_temperature_and_calibrates_fresh_data() -> None:
    rules = world()
    sims, y = draw(rules, 3000, seed=1)
    fit = cal.fit_posterior(sims, y, rules, temperature=10 * TRUE_T, per_group=False)
    assert fit.temperature == pytest.approx(TRUE_T, rel=0.1)
    assert fit.nll_after < fit.nll_before
    test_sims, test_y = draw(rules, 3000, seed=2)
    before = cal.ece(cal.product_posterior(test_sims, rules, 10 * TRUE_T), test_y)
    after = cal.ece(cal.product_posterior(test_sims, rules, fit.temperature), test_y)
    assert before > 0.2 and after < 0.04


def test_separable_data_do_not_push_the_temperature_to_its_bound() -> None:
    rules = world()
    sims, y = draw(rules, 500, seed=3)
    sims = sims + 2.0 * rules.accepted[:, y].T.astype(np.float32)  # every input right by a wide margin
    fit = cal.fit_posterior(sims, y, rules, temperature=TRUE_T, per_group=False)
    assert fit.temperature < TRUE_T * 20  # the prior holds it; without it the search runs to 1e4 x


def test_per_group_weights_discount_a_group_that_carries_no_signal() -> None:
    rules = world()
    sims, y = draw(rules, 3000, seed=4, noisy_group=2)
    fit = cal.fit_posterior(sims, y, rules, temperature=TRUE_T)
    assert fit.per_group, fit.notes
    others = np.delete(fit.weights, 2)
    assert fit.weights[2] < 0.2 * others.min()
    shared = cal.fit_posterior(sims, y, rules, temperature=TRUE_T, per_group=False)
    assert fit.nll_after < shared.nll_after


def test_weights_are_kept_when_every_group_is_alike() -> None:
    rules = world()
    sims, y = draw(rules, 400, seed=5)
    fit = cal.fit_posterior(sims, y, rules, temperature=TRUE_T)
    assert not fit.per_group and np.array_equal(fit.weights, rules.weights)


def test_missing_classes_are_named_and_the_fit_still_runs() -> None:
    rules = world()
    sims, y = draw(rules, 300, seed=6, classes=np.arange(1, 15))
    fit = cal.fit_posterior(sims, y, rules, temperature=TRUE_T, per_group=False)
    assert any("c0" in note and "no labelled input" in note for note in fit.notes)
    assert math.isfinite(fit.temperature)


def test_label_free_agreement_fit_moves_toward_calibration() -> None:
    rules = world()
    sims, y = draw(rules, 2000, seed=7)
    start = 8 * TRUE_T
    fitted = cal.fit_on_agreement(sims, rules, start)
    assert fitted < start
    assert cal.ece(cal.product_posterior(sims, rules, fitted), y) < cal.ece(cal.product_posterior(sims, rules, start), y)


def test_bad_fit_inputs_are_refused() -> None:
    rules = world()
    sims, y = draw(rules, 10, seed=8)
    sims[0, 0] = np.nan
    with pytest.raises(InputError, match="finite"):
        cal.fit_posterior(sims, y, rules, temperature=TRUE_T)
    with pytest.raises(InputError, match="positive finite"):
        cal.label_free_temperature(float("inf"))


# ----------------------------------------------------------------- metrics
def test_metrics_on_a_hand_computed_example() -> None:
    probs = np.array([[0.5, 0.5], [0.9, 0.1]])
    labels = np.array([0, 1])
    assert cal.nll(probs, labels) == pytest.approx((math.log(2) - math.log(0.1)) / 2)
    assert cal.brier(probs, labels) == pytest.approx((0.5 + 2 * 0.81) / 2)
    # bins: 0.5 (right) and 0.9 (wrong): |1 - 0.5| and |0 - 0.9|, each half the inputs
    assert cal.ece(probs, labels) == pytest.approx((0.5 + 0.9) / 2)


def test_ece_separates_calibrated_from_overconfident_predictions() -> None:
    rng = np.random.default_rng(9)
    conf = rng.uniform(0.3, 1.0, size=20000)
    right = rng.random(20000) < conf
    probs = np.stack([conf, 1 - conf], axis=1)
    labels = np.where(right, 0, 1)
    assert cal.ece(probs, labels) < 0.02
    sharp = np.stack([np.full_like(conf, 0.99), np.full_like(conf, 0.01)], axis=1)
    assert cal.ece(sharp, labels) > 0.3
    diagram = cal.reliability(probs, labels)
    assert diagram.counts.sum() == 20000 and len(diagram.edges) == cal.ECE_BINS + 1


def test_temperature_scaling_keeps_the_ranking_and_fits_a_scale() -> None:
    rules = world()
    sims, y = draw(rules, 2000, seed=10)
    logits = np.log(cal.product_posterior(sims, rules, TRUE_T)) * 5  # 5x too sharp
    scale = cal.fit_scale(logits, y)
    assert scale == pytest.approx(0.2, rel=0.15)
    assert np.array_equal(cal.temperature_scaled(logits, scale).argmax(1), logits.argmax(1))


# ---------------------------------------------------------------- open set
def test_rule_support_separates_unknown_classes() -> None:
    rules = world(classes=15)
    known = np.arange(10)
    system_rules = cal.GroupRules(rules.offsets, rules.accepted[:, known], rules.weights)
    sims, y = draw(rules, 1000, seed=11, mu=CLEAR_MU, sigma=CLEAR_SIGMA)
    support, _ = openset.rule_support(sims, system_rules, CLEAR_T)
    is_known = y < 10
    assert openset.auroc(support[is_known], support[~is_known]) > 0.9
    log_support, _ = openset.log_rule_support(sims, system_rules, CLEAR_T)
    assert openset.auroc(log_support[is_known], log_support[~is_known]) > 0.9


def test_auroc_counts_pairs_with_ties_half() -> None:
    rng = np.random.default_rng(12)
    known, unknown = rng.integers(0, 5, 60).astype(float), rng.integers(0, 4, 50).astype(float)
    pairs = (known[:, None] > unknown[None, :]).mean() + 0.5 * (known[:, None] == unknown[None, :]).mean()
    assert openset.auroc(known, unknown) == pytest.approx(pairs)


def test_fpr_at_95_tpr() -> None:
    known = np.arange(1, 101, dtype=float)  # keeping 95 of them: threshold 6
    unknown = np.array([0.0, 5.0, 6.0, 7.0])
    assert openset.fpr_at_tpr(known, unknown) == pytest.approx(0.5)


def test_thresholds_meet_their_targets_on_the_data_they_were_chosen_on() -> None:
    rng = np.random.default_rng(13)
    scores = rng.random(1000)
    correct = rng.random(1000) < scores  # higher score, more often right
    chosen = openset.threshold_for_precision(scores, correct, 0.9)
    accepted = chosen.accept(scores)
    assert correct[accepted].mean() >= 0.9 and chosen.coverage == pytest.approx(accepted.mean())
    lower = scores[scores < chosen.value].max()
    assert correct[scores >= lower].mean() < 0.9  # the next threshold down misses the target
    covering = openset.threshold_for_coverage(scores, correct, 0.8)
    assert covering.accept(scores).mean() >= 0.8 and (scores > covering.value).mean() < 0.8
    curve = openset.accuracy_coverage(scores, correct)
    assert curve["coverage"][-1] == 1.0 and curve["accuracy"][0] >= curve["accuracy"][-1]
    with pytest.raises(InputError, match="target precision"):
        openset.threshold_for_precision(scores, correct, float("nan"))


# --------------------------------------------------------------- conformal
@pytest.mark.parametrize("score", ["lac", "aps", "raps"])
def test_split_conformal_holds_its_guarantee_over_random_splits(score: str) -> None:
    rules = world()
    sims, y = draw(rules, 1000, seed=14)
    logits = cal.log_posterior(cal.group_log_masses(sims, rules, 3 * TRUE_T), rules.weights)  # miscalibrated on purpose
    alpha, n_cal, covered = 0.1, 200, []
    rng = np.random.default_rng(15)
    for split in range(200):
        order = rng.permutation(len(y))
        c, t = order[:n_cal], order[n_cal:]
        model = conformal.SplitConformal(alpha, score, seed=split).fit(logits[c], y[c])
        covered.append(conformal.coverage(model.predict(logits[t]), y[t]))
    mean = float(np.mean(covered))
    assert 1 - alpha - 0.01 <= mean <= 1 - alpha + 1 / (n_cal + 1) + 0.01


def test_lac_sets_adapt_when_the_posterior_is_sure() -> None:
    rules = world()
    sims, y = draw(rules, 600, seed=16)
    sims = sims + 2.0 * rules.accepted[:, y].T.astype(np.float32)  # every posterior rounds to 1.0
    logits = cal.log_posterior(cal.group_log_masses(sims, rules, TRUE_T), rules.weights)
    model = conformal.SplitConformal(0.1).fit(logits[:300], y[:300])
    cover = conformal.coverage(model.predict(logits[300:]), y[300:])
    assert 0.85 <= cover <= 0.95  # ties at p = 1.0 would have given 1.0


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, float("nan")])
def test_conformal_refuses_alpha_outside_the_open_interval(alpha: float) -> None:
    with pytest.raises(InputError, match="alpha"):
        conformal.SplitConformal(alpha)


def test_conformal_refuses_small_calibration_sets_and_names_missing_classes() -> None:
    logits = np.random.default_rng(17).normal(size=(30, 4))
    with pytest.raises(InputError, match="at least 20"):
        conformal.SplitConformal(0.1).fit(logits[:19], np.zeros(19, dtype=int))
    model = conformal.SplitConformal(0.1).fit(logits, np.arange(30) % 3, class_names=("a", "b", "c", "d"))
    assert model.notes == ["1 class(es) absent from the calibration set: d"]


# ------------------------------------------------------------- multi-label
def overlapping_world(n: int, seed: int) -> tuple[cal.GroupRules, np.ndarray, np.ndarray]:
    """Concept classes that overlap: 'g0 is option 0', 'g1 is option 1', ...; every
    input's labels are the concepts its drawn answers satisfy (often several)."""
    groups, options = 3, 4
    rng = np.random.default_rng(seed)
    answers = rng.integers(0, options, size=(n, groups))
    q = groups * options
    concepts = [(g, o) for g in range(groups) for o in range(2)]  # 6 concepts
    accepted = np.ones((q, len(concepts)))
    for n_c, (g, o) in enumerate(concepts):
        accepted[g * options:(g + 1) * options, n_c] = 0
        accepted[g * options + o, n_c] = 1
    rules = cal.GroupRules(np.arange(0, q + 1, options), accepted, np.ones(groups))
    sims = CLEAR_SIGMA * rng.normal(size=(n, q))
    for g in range(groups):
        sims[np.arange(n), g * options + answers[:, g]] += CLEAR_MU
    targets = np.stack([answers[:, g] == o for g, o in concepts], axis=1)
    return rules, sims.astype(np.float32), targets


def test_multilabel_scores_find_overlapping_labels() -> None:
    rules, sims, targets = overlapping_world(2000, seed=18)
    assert (targets.sum(axis=1) >= 2).mean() > 0.05  # the data really overlap
    scores = multilabel.class_support(sims, rules, CLEAR_T)
    thresholds = multilabel.fit_thresholds(scores[:1000], targets[:1000])
    report = multilabel.multilabel_report(scores[1000:], targets[1000:], thresholds.predict(scores[1000:]))
    assert report["map"] > 0.9 and report["micro_f1"] > 0.85
    glob = multilabel.fit_thresholds(scores[:1000], targets[:1000], per_class=False)
    assert len(set(glob.values.tolist())) == 1


def test_multilabel_scores_do_not_depend_on_the_other_classes() -> None:
    rules, sims, _ = overlapping_world(50, seed=19)
    fewer = cal.GroupRules(rules.offsets, rules.accepted[:, :3], rules.weights)
    np.testing.assert_allclose(multilabel.class_support(sims, fewer, TRUE_T),
                               multilabel.class_support(sims, rules, TRUE_T)[:, :3])


def test_average_precision_and_bad_thresholds() -> None:
    assert multilabel.average_precision(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1])) == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(InputError, match="finite"):
        multilabel.given_threshold(float("inf"), 3)


def test_fit_scores_are_looked_up_by_name() -> None:
    assert openset.fit_score(openset.DEFAULT_FIT_SCORE) is openset.log_rule_support
    assert openset.fit_score("energy") is openset.energy
    with pytest.raises(InputError, match="rule support"):
        openset.fit_score("support")


def test_energy_is_the_log_sum_exp_of_every_class_log_rule_support() -> None:
    """Energy adds credit for every other class that fits: equal to the best class's log rule support when
    only it fits, log 2 above it when a twin fits as well."""
    one = np.log(np.array([[1.0, 1e-9, 1e-9], [1.0, 1.0, 1e-12]]))
    energy = openset.support_energy(one)
    assert energy[0] == pytest.approx(0.0, abs=1e-8) and energy[1] == pytest.approx(np.log(2), abs=1e-8)
    huge = openset.support_energy(np.array([[-1e4, -1e4 - 1]]))  # stays finite far from 0
    assert huge[0] == pytest.approx(-1e4 + np.log1p(np.exp(-1)))


def test_a_calibrated_system_scores_the_fitted_posterior_through_cot_log() -> None:
    """The fit is stored as the system's temperature and weights: cot-log on the new system is the calibrated posterior."""
    system = random_system(np.random.default_rng(20), groups=3)
    data = synthetic_set(system, 10, np.random.default_rng(21), noise=0.6)
    scorer = Scorer.build(system, hashed_embed, ScoringConfig(100.0), ("cot-log",))
    rules = cal.GroupRules.from_compiled(scorer.compiled)
    sims, labels = scorer.batch(data.embeddings)["options"], data.label_indices(scorer.class_names)
    fit = cal.fit_posterior(sims, labels, rules, 100.0, per_group=True)
    new = system.with_temperature(fit.temperature).with_group_weights(fit.group_weights(rules.group_names))
    assert new.fingerprint != system.fingerprint
    rescored = Scorer.build(new, hashed_embed, ScoringConfig(new.temperature), ("cot-log",))
    np.testing.assert_allclose(rescored.probabilities(data.embeddings, "cot-log"),
                               cal.product_posterior(sims, rules, fit.temperature, fit.weights), atol=1e-4)
