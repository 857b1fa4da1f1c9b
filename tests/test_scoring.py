"""Scoring math against a direct transcription of the article's per-image pseudo-code."""

from __future__ import annotations

import numpy as np
import pytest

from cotembed import scoring
from cotembed.system import System


def random_system(rng: np.random.Generator, n_groups: int = 5, n_classes: int = 20) -> System:
    groups = {f"g{g}": {"prompt": f"q{g} {{}}", "options": [f"o{g}_{i}" for i in range(int(rng.integers(2, 9)))]} for g in range(n_groups)}
    rules = {
        f"class{n}": {name: int(rng.integers(len(spec["options"]))) for name, spec in groups.items()}
        for n in range(n_classes)
    }
    return System.from_dict({"groups": groups, "rules": rules})


def article_scores(image_embedding, text_embeddings, system: System, temperature: float) -> dict[str, float]:
    """The article's classify_pokemon, line by line, for one image (returns its scores dict)."""
    sims = [float(np.dot(image_embedding, t) / (np.linalg.norm(image_embedding) * np.linalg.norm(t))) for t in text_embeddings]
    probabilities = {}
    position = 0
    for group in system.groups:
        group_sims = np.asarray(sims[position : position + len(group.options)]) * temperature
        e = np.exp(group_sims - group_sims.max())
        probabilities[group.name] = e / e.sum()
        position += len(group.options)
    scores = {}
    for name, rules in system.rules.items():
        score = 0.0
        for group, targets in rules.items():
            weight = next(g.weight for g in system.groups if g.name == group)
            score += weight * sum(probabilities[group][t] for t in targets)
        scores[name] = score
    return scores


def test_cot_matches_article_pseudocode_on_random_embeddings():
    rng = np.random.default_rng(0)
    system = random_system(rng)
    compiled = system.compile()
    images = rng.normal(size=(200, 32)).astype(np.float32)
    texts = rng.normal(size=(compiled.n_prompts, 32)).astype(np.float32)
    for temperature in (1.0, 10.0, 100.0):
        probs = scoring.group_softmax(scoring.cosine_similarity(images, texts), compiled.offsets, temperature)
        ours = scoring.cot_scores(probs, compiled.rule_matrix)
        theirs = np.array([list(article_scores(img, texts, system, temperature).values()) for img in images])
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
        # Same predictions wherever the article's winner is not a (float-level) tie.
        top2 = np.sort(theirs, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 1e-4
        assert clear.sum() > 150
        assert (ours.argmax(axis=1)[clear] == theirs.argmax(axis=1)[clear]).all()


def test_group_softmax_sums_to_one_per_group():
    rng = np.random.default_rng(1)
    offsets = np.array([0, 3, 4, 10])
    probs = scoring.group_softmax(rng.normal(size=(5, 10)), offsets, 30.0)
    for a, b in zip(offsets[:-1], offsets[1:]):
        np.testing.assert_allclose(probs[:, a:b].sum(axis=1), 1.0, rtol=1e-5)
    assert probs[:, 3].tolist() == [1.0] * 5  # a one-option group is certain


def test_group_softmax_is_stable_for_large_temperatures():
    sims = np.array([[0.9, 0.1, -0.5, 0.3]], dtype=np.float32)
    probs = scoring.group_softmax(sims, np.array([0, 2, 4]), 1e4)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs, [[1, 0, 0, 1]], atol=1e-6)


def test_baseline_is_argmax_cosine():
    rng = np.random.default_rng(2)
    images, names = rng.normal(size=(50, 16)), rng.normal(size=(7, 16))
    sims = scoring.cosine_similarity(images, names)
    expected = [int(np.argmax([np.dot(i, n) / np.linalg.norm(i) / np.linalg.norm(n) for n in names])) for i in images]
    assert sims.argmax(axis=1).tolist() == expected


def test_multi_option_rule_sums_its_options():
    system = System.from_dict({
        "groups": {"c": {"prompt": "{}", "options": ["a", "b", "c"]}},
        "rules": {"AB": {"c": ["a", "b"]}, "C": {"c": "c"}},
    })
    compiled = system.compile()
    probs = np.array([[0.3, 0.3, 0.4]], dtype=np.float32)
    scores = scoring.cot_scores(probs, compiled.rule_matrix)
    np.testing.assert_allclose(scores, [[0.6, 0.4]], rtol=1e-6)


def test_hybrid_separates_classes_with_identical_rules():
    cot = np.array([[0.8, 0.8, 0.1]], dtype=np.float32)
    name_sims = np.array([[0.1, 0.3, 0.9]], dtype=np.float32)
    hybrid = scoring.hybrid_scores(cot, name_sims, temperature=10.0, weight=0.5)
    assert hybrid[0].argmax() == 1  # the name term breaks the tie...
    assert hybrid[0, 1] > hybrid[0, 2]  # ...without overriding strong rule evidence
    np.testing.assert_allclose(scoring.hybrid_scores(cot, name_sims, 10.0, 0.0), cot)


LIKELIHOOD_POSTERIORS = ("cot", "hybrid", "random-control")
"""Methods whose calibrated probabilities are a likelihood of the groups' answers, not a function of their scores."""


@pytest.mark.parametrize("mode", ["normalised", "calibrated"])
def test_every_registered_method_gives_probabilities_that_rank_like_its_scores(mode: str):
    """Normalised probabilities always rank like the scores; calibrated ones too, except for the methods whose
    posterior is the product-of-groups likelihood (their ranking is cot-log's, checked elsewhere)."""
    rng = np.random.default_rng(3)
    system = random_system(rng, n_groups=3, n_classes=6)
    compiled = system.compile()
    config = scoring.ScoringConfig(temperature=20.0, probabilities=mode)
    vectors = {"options": rng.normal(size=(compiled.n_prompts, 16)), "names": rng.normal(size=(compiled.n_classes, 16))}
    for name in scoring.method_names():  # methods with prompt sets of their own (ensemble templates, random words)
        for prompt_set, texts in scoring.get_method(name).prompt_sets(compiled, config).items():
            vectors.setdefault(prompt_set, rng.normal(size=(len(texts), 16)))
    scorer = scoring.Scorer(system, vectors, config, scoring.method_names())
    support = rng.normal(size=(12, 16)).astype(np.float32)  # methods fed by labelled examples are fitted on some first
    labels = np.arange(12) % compiled.n_classes
    scorer = scorer.with_methods([scorer.method(n).fit_examples([scorer.batch(support)], labels) for n in scoring.method_names()])
    x = rng.normal(size=(7, 16)).astype(np.float32)
    for name in scoring.method_names():
        scores = scorer.scores(x, name)
        p = scorer.probabilities(x, name)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
        if mode == "normalised" or name not in LIKELIHOOD_POSTERIORS:
            assert (p.argmax(axis=1) == scores.argmax(axis=1)).all(), name
