"""Calibrated probabilities, fit scores, abstention, conformal sets and multi-label through the Python API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cotembed.errors import InputError
from cotembed.scoring import OPTIONS, ScoringConfig
from cotembed.scoring._calibration import GroupRules, product_posterior
from cotembed.scoring._decisions import conformal_sets, fit_conformal, multilabel_targets, parse_target
from cotembed.scoring._functions import sum_normalize
from cotembed.scoring._openset import rule_support
from cotembed.system import System

ROOT = Path(__file__).resolve().parents[1]
CRITTERS = ROOT / "examples" / "critters"


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two critters splits of other seeds: ``test`` and ``cal`` (calibration data), 2 images per species."""
    from cotembed_critters.species import generate_split

    root = tmp_path_factory.mktemp("critters-probs")
    out = {}
    for name, seed in (("test", 5151), ("cal", 6262)):
        generate_split(CRITTERS / "species.yaml", root / name, 2, seed=seed, progress=False)
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def clf() -> Any:
    from cotembed._classifier import CoTClassifier
    from cotembed.encoders import load_encoder

    encoder = load_encoder("critters")
    yield CoTClassifier(System.load(CRITTERS / "system.yaml"), encoder)
    encoder.close()


def _samples(clf: Any, path: Path) -> list[Any]:
    from cotembed.data import collect_samples, resolve_labels

    return resolve_labels(collect_samples([str(path)]), clf.system.resolve_label)[0]


def test_default_probabilities_are_the_product_of_groups_posterior(clf: Any, splits: dict[str, Path]) -> None:
    from cotembed._classifier import CoTClassifier

    samples = _samples(clf, splits["test"])[:10]
    embeddings = clf.embedding_set(samples).embeddings
    sims = clf.scorer.batch(embeddings)[OPTIONS]
    rules = GroupRules.from_compiled(clf.compiled)
    expected = product_posterior(sims, rules, clf.temperature)
    np.testing.assert_allclose(clf.scored(embeddings).probabilities, expected, rtol=1e-5, atol=1e-9)
    old = CoTClassifier(clf.system, clf.encoder, probabilities="normalised")
    np.testing.assert_allclose(old.scored(embeddings).probabilities, sum_normalize(clf.scorer.scores(embeddings)), rtol=1e-5)


def test_calibrated_probabilities_are_far_better_calibrated_than_normalised(clf: Any, splits: dict[str, Path]) -> None:
    from cotembed._classifier import CoTClassifier

    samples = _samples(clf, splits["test"])
    calibrated = clf.evaluate(samples, ["cot"]).methods["cot"].ece
    normalised = CoTClassifier(clf.system, clf.encoder, probabilities="normalised").evaluate(samples, ["cot"])
    assert normalised.probabilities == "normalised"
    assert calibrated is not None and calibrated < 0.1 < 0.5 < normalised.methods["cot"].ece


def test_unknown_probability_mode_is_refused() -> None:
    with pytest.raises(InputError, match="calibrated, normalised"):
        ScoringConfig(50.0, probabilities="raw")


def test_every_prediction_carries_the_rule_support_of_its_class(clf: Any, splits: dict[str, Path]) -> None:
    images = sorted(splits["test"].rglob("*.png"))[:6]
    chosen = clf.with_fit_score("rule-support")
    predictions = chosen.classify(images=images)
    embeddings = clf.embed(images=images)
    sims = clf.scorer.batch(embeddings)[OPTIONS]
    support, best = rule_support(sims, GroupRules.from_compiled(clf.compiled), clf.temperature)
    assert [p.prediction for p in predictions] == [clf.classes_[i] for i in best]
    np.testing.assert_allclose([p.fit_score for p in predictions], support, rtol=1e-5)
    assert all(0 <= p.fit_score <= 1 and not p.abstained and p.probability is not None for p in predictions)
    logged = clf.classify(images=images)  # the default: log rule support, <= 0
    assert all(p.fit_score <= 0 for p in logged)
    # energy: log-sum-exp of every class's log rule support, so at least the predicted class's and <= log N
    energy = clf.with_fit_score("energy").classify(images=images)
    assert all(lg.fit_score - 1e-6 <= e.fit_score <= np.log(len(clf.classes_)) for lg, e in zip(logged, energy))
    assert any(e.fit_score > lg.fit_score + 1e-3 for lg, e in zip(logged, energy))


def test_abstention_with_a_given_threshold(clf: Any, splits: dict[str, Path]) -> None:
    images = sorted(splits["test"].rglob("*.png"))[:4]
    fits = clf.fit_score(images=images)
    cut = float(np.sort(fits)[1])  # the lowest input falls below
    predictions = clf.with_abstention(cut).classify(images=images)
    abstained = [p for p in predictions if p.abstained]
    assert len(abstained) == int((fits < cut).sum()) >= 1
    for p in abstained:
        d = p.to_dict()
        assert d["prediction"] is None and d["abstained"] is True and d["candidate"] == p.top[0][0]
        assert "below the threshold" in d["reason"]
    assert clf.with_abstention(cut).predict(images=images).count(None) == len(abstained)


def test_abstention_threshold_chosen_for_a_target_on_labelled_data(clf: Any, splits: dict[str, Path]) -> None:
    cal = _samples(clf, splits["cal"])
    chosen = clf.with_abstention(target="coverage=0.8", data=cal)
    a = chosen.decisions.abstention
    assert a is not None and a.coverage is not None and a.coverage >= 0.8 and "coverage >= 0.8" in a.chosen_by
    kept = ~a.abstains(clf.scored(clf.embedding_set(cal).embeddings).fit)
    assert kept.mean() == pytest.approx(a.coverage)
    with pytest.raises(InputError, match="labelled data"):
        clf.with_abstention(target="precision=0.9")
    with pytest.raises(InputError, match="precision=P or coverage=C"):
        parse_target("recall=0.9")
    with pytest.raises(InputError, match="finite"):
        clf.with_abstention(float("nan"))


def test_conformal_sets_hold_the_guarantee_on_exchangeable_draws() -> None:
    """Split conformal through the decisions layer: over many random splits of one pool, the mean
    coverage is at least 1 - alpha and at most 1 - alpha + 1/(n+1) (up to sampling noise)."""
    rng = np.random.default_rng(0)
    n_pool, n_classes, alpha, n_cal = 4000, 6, 0.1, 200
    logits = rng.normal(size=(n_pool, n_classes)) * 2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(n_classes, p=row) for row in p])
    coverages, sizes = [], []
    for trial in range(40):
        order = rng.permutation(n_pool)
        cal, test = order[:n_cal], order[n_cal:n_cal + 500]
        conformal = fit_conformal(alpha, p[cal], labels[cal], seed=trial)
        sets = conformal_sets(conformal, p[test])
        coverages.append(sets[np.arange(len(test)), labels[test]].mean())
        sizes.append(sets.sum(axis=1).mean())
    mean = float(np.mean(coverages))
    assert 1 - alpha - 0.01 <= mean <= 1 - alpha + 1 / (n_cal + 1) + 0.01
    assert 1 < np.mean(sizes) < n_classes


def test_conformal_refuses_bad_alpha_and_small_calibration_sets(clf: Any, splits: dict[str, Path]) -> None:
    cal = _samples(clf, splits["cal"])
    for alpha in (0.0, 1.0, -0.1, float("nan")):
        with pytest.raises(InputError, match="alpha"):
            clf.with_conformal(alpha, cal)
    with pytest.raises(InputError, match="at least 20"):
        clf.with_conformal(0.1, cal[:19])
    sets = clf.with_conformal(0.1, cal).classify(images=sorted(splits["test"].rglob("*.png"))[:5])
    assert all(p.prediction_set and p.prediction in p.prediction_set for p in sets)


def test_multilabel_targets_and_thresholds(clf: Any, splits: dict[str, Path]) -> None:
    names = clf.compiled.class_names
    targets = multilabel_targets([f"{names[0]}; {names[3]}", names[1]], names, clf.system.resolve_label)
    assert targets.sum() == 3 and targets[0, 0] and targets[0, 3] and targets[1, 1]
    with pytest.raises(InputError, match="Dragon"):
        multilabel_targets([f"{names[0]};Dragon"], names, clf.system.resolve_label)
    images = sorted(splits["test"].rglob("*.png"))[:3]
    everything = clf.with_multilabel(0.0).classify(images=images)
    assert all(len(p.labels or ()) == len(names) for p in everything)
    fitted = clf.with_multilabel(data=_samples(clf, splits["cal"]))
    assert fitted.decisions.multilabel is not None and fitted.decisions.multilabel.per_class
    for p in fitted.classify(images=images):
        assert p.labels is not None and all(0 <= s <= 1 for _, s in p.labels)
    with pytest.raises(InputError, match="threshold"):
        clf.with_multilabel()


def test_open_set_section_separates_held_out_species(clf: Any, splits: dict[str, Path]) -> None:
    from cotembed.evaluation._probabilities import open_set_section, without_classes

    data = clf.labelled_embedding_set(_samples(clf, splits["test"]))
    section = open_set_section(clf, data, "cot", 6, seed=3)
    assert len(section["held_out"]) == 6 and section["n_unknown"] == 12 and section["n_known"] == 44
    assert section["auroc"] >= 0.9
    assert section["curve"]["coverage"][-1] == 1.0
    assert set(without_classes(clf.system, section["held_out"]).class_names).isdisjoint(section["held_out"])
