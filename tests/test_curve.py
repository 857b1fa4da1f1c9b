"""The test-time-compute curve: subsets of groups scored from one pass, summarised per k."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from cotembed.cli import main
from cotembed.errors import InputError
from cotembed.evaluation._curve import CURVE_METHODS, accuracy_curve, choose_subsets, group_terms, tie_credit
from cotembed.evaluation._evaluate import evaluate
from cotembed.scoring import Scorer, ScoringConfig, l2_normalize
from support import COLOURS, make_image_folder
from synthetic import hashed_embed, random_system, synthetic_set


@pytest.mark.parametrize("method", list(CURVE_METHODS))
def test_a_subset_scores_like_the_system_without_the_other_groups(method):
    rng = np.random.default_rng(0)
    system = random_system(rng, groups=4, options=5, classes=15, multi=True, weights=(1, 2, 0.5, 1.5))
    config = ScoringConfig(12.0, hybrid_weight=0.7)
    full = Scorer.build(system, hashed_embed, config, (method,))
    x = l2_normalize(rng.normal(size=(40, 64)))
    terms = group_terms(full.batch(x), method)
    for subset in [(0,), (1, 3), (0, 2, 3)]:
        reduced = system
        for g, name in enumerate(system.group_names):
            if g not in subset:
                reduced = reduced.without_group(name)
        expected = Scorer.build(reduced, hashed_embed, config, (method,)).scores(x, method)
        np.testing.assert_allclose(terms.scores(subset), expected, rtol=1e-5, atol=1e-5)


def test_ties_count_one_over_the_number_of_tied_classes():
    scores = np.array([[1.0, 3.0, 3.0, 3.0], [2.0, 2.0, 0.0, 1.0], [5.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(tie_credit(scores, np.array([2, 3, 0])), [1 / 3, 0.0, 1.0])


def test_all_subsets_when_few_and_a_seeded_sample_when_many():
    rng = np.random.default_rng(0)
    assert choose_subsets(4, 2, 100, rng) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    sample = choose_subsets(12, 6, 10, np.random.default_rng(3))
    assert len(sample) == len(set(sample)) == 10 and all(len(s) == 6 and list(s) == sorted(s) for s in sample)
    assert sample == choose_subsets(12, 6, 10, np.random.default_rng(3))
    assert sample != choose_subsets(12, 6, 10, np.random.default_rng(4))


def _world(groups: int = 5, classes: int = 20, per_class: int = 6):
    rng = np.random.default_rng(11)
    system = random_system(rng, groups=groups, options=4, classes=classes)
    data = synthetic_set(system, per_class, rng)
    scorer = Scorer.build(system, hashed_embed, ScoringConfig(20.0), ("cot", "baseline"))
    return system, data, scorer


def test_the_curve_ends_at_the_full_system_and_starts_from_the_baseline():
    system, data, scorer = _world()
    curve = accuracy_curve(scorer, data, "cot")
    report = evaluate(scorer, data)
    assert [p.k for p in curve.points] == [1, 2, 3, 4, 5]
    assert curve.points[-1].mean == pytest.approx(report.methods["cot"].acc1)  # distinct rules: no ties at k = G
    assert curve.baseline == pytest.approx(report.methods["baseline"].acc1)
    assert curve.points[-1].prompts_min == system.compile().n_prompts
    assert curve.points[-1].mean > 0.9 and curve.points[0].mean < curve.points[-1].mean


def test_points_summarise_their_subsets():
    system, data, scorer = _world()
    curve = accuracy_curve(scorer, data, "cot", max_subsets=4, seed=2)
    sizes = {g.name: len(g.options) for g in system.groups}
    for point in curve.points:
        at_k = [s for s in curve.subsets if len(s.groups) == point.k]
        assert point.subsets == len(at_k) == min(4, math.comb(5, point.k)) and point.of == math.comb(5, point.k)
        accs = [s.accuracy for s in at_k]
        assert point.mean == pytest.approx(np.mean(accs)) and point.min == min(accs) and point.max == max(accs)
        assert all(s.prompts == sum(sizes[g] for g in s.groups) for s in at_k)
    again = accuracy_curve(scorer, data, "cot", max_subsets=4, seed=2)
    assert again.to_dict() == curve.to_dict()
    json.dumps(curve.to_dict(), allow_nan=False)


def test_one_question_alone_earns_only_its_share_of_the_classes_it_leaves_tied():
    """One group of 4 options over 20 classes leaves about 5 classes tied per answer; with unequal class
    sizes, crediting the first tied class instead would make the figure depend on class order."""
    system, data, scorer = _world()
    data = data.subset([row for row in range(len(data)) if row % 6 <= int(data.labels[row][-2:]) % 6])
    curve = accuracy_curve(scorer, data, "cot")
    compiled = system.compile()
    truth = data.label_indices(compiled.class_names)
    cos = data.embeddings @ hashed_embed(compiled.prompts).T
    for subset in (s for s in curve.subsets if len(s.groups) == 1):
        g = system.group_names.index(subset.groups[0])
        a, b = compiled.offsets[g], compiled.offsets[g + 1]
        answer = a + cos[:, a:b].argmax(axis=1)
        accepts = compiled.rule_matrix[answer, truth] > 0
        share = (compiled.rule_matrix[answer] > 0).sum(axis=1)
        assert subset.accuracy == pytest.approx(np.mean(accepts / share))


def test_curve_needs_a_scorer_for_the_method_and_the_baseline():
    _, data, _ = _world()
    system = random_system(np.random.default_rng(0))
    with pytest.raises(InputError, match="baseline"):
        accuracy_curve(Scorer.build(system, hashed_embed, ScoringConfig(10.0), ("cot",)), data, "cot")
    with pytest.raises(InputError, match="supports"):
        accuracy_curve(Scorer.build(system, hashed_embed, ScoringConfig(10.0), ("ensemble", "baseline")), data, "ensemble")


# ---------------------------------------------------------------------- CLI
@pytest.fixture
def two_group_system(tmp_path):
    spec = {
        "name": "colours-and-sizes",
        "groups": {"colour": {"prompt": "something {}", "options": list(COLOURS)},
                   "size": {"prompt": "a {} thing", "options": ["small", "large"]}},
        "rules": {f"{c}-thing": {"colour": c, "size": i % 2} for i, c in enumerate(COLOURS)},
    }
    path = tmp_path / "system.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def test_curve_verb_writes_json_and_png(capsys, tmp_path, colour_model, two_group_system):
    data = make_image_folder(tmp_path / "data", per_class=2)
    out = tmp_path / "figs" / "curve.json"
    code = main([str(a) for a in ["curve", two_group_system, data, "--model", colour_model, "--no-cache", "-q",
                                  "--output", out, "--format", "json"]])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    payload = json.loads(stdout)
    assert json.loads(out.read_text()) == payload
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p["k"] for p in payload["points"]] == [1, 2] and payload["points"][1]["mean"] == 1.0
    assert payload["baseline"]["text_prompts"] == 4 and payload["model"] == "test:colour"
    assert {tuple(s["groups"]) for s in payload["subsets"]} == {("colour",), ("size",), ("colour", "size")}
    code = main([str(a) for a in ["curve", two_group_system, data, "--model", colour_model, "--no-cache", "-q",
                                  "--output", tmp_path / "t.json", "--no-plot"]])
    table = capsys.readouterr().out
    assert code == 0 and "baseline (N=4)" in table and not (tmp_path / "t.png").exists()


@pytest.mark.parametrize("extra, message", [(["--output", "x.png"], ".json"), (["--method", "ensemble"], "invalid choice"),
                                            (["--max-subsets", "0"], "--max-subsets")])
def test_curve_bad_input_exits_2(capsys, tmp_path, colour_model, two_group_system, extra, message):
    data = make_image_folder(tmp_path / "data", per_class=1)
    code = main([str(a) for a in ["curve", two_group_system, data, "--model", colour_model, "--no-cache", "-q", *extra]])
    assert code == 2 and message in capsys.readouterr().err
