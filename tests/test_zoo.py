"""The method zoo: ensemble, dclip, cot-log and random-control, on one encoding pass."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from cotembed.cli import main
from cotembed.errors import InputError
from cotembed.evaluation._evaluate import SeededResult, evaluate
from cotembed.reporting._text import eval_table
from cotembed.scoring import Scorer, ScoringConfig, l2_normalize, parse_methods
from cotembed.scoring._zoo import DEFAULT_TEMPLATES, RANDOM_WORDS, question_frame, random_prompts, random_seeds
from cotembed.system import System
from support import COLOUR_SYSTEM, make_image_folder
from synthetic import hashed_embed, random_system, synthetic_set

ZOO = ("ensemble", "dclip", "cot-log", "random-control")


def scorer(system: System, methods, temperature: float = 20.0, **options) -> Scorer:
    return Scorer.build(system, hashed_embed, ScoringConfig(temperature, method_options=options), methods)


def inputs(n: int = 50, seed: int = 0) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).normal(size=(n, 64)))


def test_the_zoo_is_registered_for_every_verb():
    assert parse_methods(",".join(ZOO)) == ZOO


def test_ensemble_is_clip_prompt_ensembling():
    system = random_system(np.random.default_rng(1))
    templates = ("a photo of a {}.", "art of the {}.", "{} in a video game")
    s = scorer(system, ("ensemble",), templates=list(templates))
    x = inputs()
    np.testing.assert_allclose(s.scores(x, "ensemble"), _ensemble_reference(system, templates, x), rtol=1e-5, atol=1e-6)
    assert s.prompts_used("ensemble") == 3 * len(system.class_names)
    assert scorer(system, ("ensemble",)).prompts_used("ensemble") == len(DEFAULT_TEMPLATES) * len(system.class_names)


def _ensemble_reference(system: System, templates, x: np.ndarray) -> np.ndarray:
    classes = []
    for c in system.class_names:
        mean = hashed_embed([t.replace("{}", c) for t in templates]).mean(axis=0)
        classes.append(mean / np.linalg.norm(mean))
    return x @ np.asarray(classes).T


def test_a_systems_templates_are_used_by_ensemble_and_the_option_overrides_them():
    plain = random_system(np.random.default_rng(1))
    own = ("a photo of a {}.", "a drawing of a {}.")
    flag = ("art of the {}.", "{} in a video game", "a cartoon {}.")
    system = plain.with_templates(own)
    x = inputs()
    s = scorer(system, ("ensemble",))
    np.testing.assert_allclose(s.scores(x, "ensemble"), _ensemble_reference(system, own, x), rtol=1e-5, atol=1e-6)
    assert s.prompts_used("ensemble") == 2 * len(system.class_names)
    overridden = scorer(system, ("ensemble",), templates=list(flag))
    np.testing.assert_allclose(overridden.scores(x, "ensemble"), _ensemble_reference(system, flag, x), rtol=1e-5, atol=1e-6)
    assert overridden.prompts_used("ensemble") == 3 * len(system.class_names)
    data = synthetic_set(system, per_class=2, rng=np.random.default_rng(2))
    assert evaluate(s, data).method_options["templates"] == list(own)
    assert evaluate(overridden, data).method_options["templates"] == list(flag)
    assert evaluate(scorer(plain, ("ensemble",)), data).method_options["templates"] == list(DEFAULT_TEMPLATES)


@pytest.mark.parametrize("templates", [["no placeholder"], ["{} and {}"], "{}"])
def test_bad_templates_are_input_errors(templates):
    with pytest.raises(InputError, match="templates"):
        scorer(random_system(np.random.default_rng(1)), ("ensemble",), templates=templates)


def test_dclip_is_the_mean_cosine_of_the_accepted_prompts_without_softmax_or_weights():
    system = random_system(np.random.default_rng(2), multi=True, weights=(1, 3, 0.5, 2))
    x = inputs()
    cos = x @ hashed_embed(system.compile().prompts).T
    expected = np.stack([cos[:, system.compile().rule_matrix[:, n] > 0].mean(axis=1) for n in range(len(system.class_names))], axis=1)
    np.testing.assert_allclose(scorer(system, ("dclip",)).scores(x, "dclip"), expected, rtol=1e-5, atol=1e-6)


def test_cot_log_is_the_weighted_sum_of_log_group_masses():
    system = random_system(np.random.default_rng(3), multi=True, weights=(1, 3, 0.5, 2))
    s = scorer(system, ("cot-log",), temperature=5.0)
    x = inputs()
    compiled = system.compile()
    cos = x @ hashed_embed(compiled.prompts).T
    expected = np.zeros((len(x), compiled.n_classes))
    for g, group in enumerate(system.groups):
        a, b = compiled.offsets[g], compiled.offsets[g + 1]
        p = np.exp(5.0 * cos[:, a:b]) / np.exp(5.0 * cos[:, a:b]).sum(axis=1, keepdims=True)
        for n, c in enumerate(compiled.class_names):
            expected[:, n] += group.weight * np.log(p[:, list(system.rules[c][group.name])].sum(axis=1))
    np.testing.assert_allclose(s.scores(x, "cot-log"), expected, rtol=1e-4, atol=1e-4)
    probs = s.probabilities(x, "cot-log")
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_cot_log_ranks_classes_exactly_as_dclip_with_single_option_rules(seed):
    """Each group's softmax normaliser is shared by every class: cot-log = t * G * dclip - const per input."""
    system = random_system(np.random.default_rng(seed), groups=5, options=6, classes=30)
    s = scorer(system, ("cot-log", "dclip"), temperature=30.0)
    x = inputs(200, seed)
    log, mean = s.scores(x, "cot-log"), s.scores(x, "dclip")
    offset = log - 30.0 * 5 * mean
    np.testing.assert_allclose(offset, offset[:, :1].repeat(offset.shape[1], axis=1), atol=2e-3)
    assert (log.argmax(axis=1) == mean.argmax(axis=1)).all()
    np.testing.assert_array_equal(np.argsort(-log, axis=1, kind="stable")[:, :5], np.argsort(-mean, axis=1, kind="stable")[:, :5])


def _two_class_system(weights=(1.0, 1.0), multi=False) -> System:
    return System.from_dict({
        "groups": {"g0": {"prompt": "{}", "options": ["a", "b", "c"], "weight": weights[0]},
                   "g1": {"prompt": "{}", "options": ["d", "e"], "weight": weights[1]}},
        "rules": {"A": {"g0": ["a", "b"] if multi else "a", "g1": "d"}, "B": {"g0": "c", "g1": "e"}},
    })


def _sims_scorer(system: System, cos: dict[str, float], temperature: float = 10.0) -> tuple[Scorer, np.ndarray]:
    """Prompt vectors and one input chosen so the input's cosine to each option prompt is ``cos[option]``."""
    prompts = system.compile().prompts
    vectors = np.eye(len(prompts) + 1, dtype=np.float32)[: len(prompts)]
    x = np.zeros((1, len(prompts) + 1), dtype=np.float32)
    x[0, : len(prompts)] = [cos[p] for p in prompts]
    x[0, -1] = np.sqrt(max(0.0, 1 - float((x**2).sum())))
    config = ScoringConfig(temperature)
    return Scorer(system, {"options": vectors}, config, ("dclip", "cot-log")), x


def test_cot_log_and_dclip_part_when_a_rule_accepts_several_options():
    # A accepts a or b: its colour mass is p(a) + p(b), while dclip averages cos(a) with a poor cos(b).
    s, x = _sims_scorer(_two_class_system(multi=True), {"a": 0.5, "b": 0.0, "c": 0.45, "d": 0.1, "e": 0.1})
    assert s.predict(x, "cot-log") == ["A"] and s.predict(x, "dclip") == ["B"]


def test_cot_log_and_dclip_part_when_group_weights_differ():
    # B wins g1 by more than A wins g0 (dclip, unweighted); weighting g0 x3 flips cot-log to A.
    cos = {"a": 0.3, "b": 0.0, "c": 0.2, "d": 0.0, "e": 0.15}
    s, x = _sims_scorer(_two_class_system(weights=(3.0, 1.0)), cos)
    assert s.predict(x, "cot-log") == ["A"] and s.predict(x, "dclip") == ["B"]
    s, x = _sims_scorer(_two_class_system(), cos)
    assert s.predict(x, "cot-log") == s.predict(x, "dclip") == ["B"]


def test_cot_log_stays_finite_where_probabilities_underflow():
    system = random_system(np.random.default_rng(4), multi=True)
    s = scorer(system, ("cot-log", "cot"), temperature=10_000.0)
    x = inputs()
    scores = s.scores(x, "cot-log")
    assert np.isfinite(scores).all() and np.isfinite(s.probabilities(x, "cot-log")).all()


def test_random_control_keeps_questions_and_option_counts_with_fresh_words():
    system = random_system(np.random.default_rng(5))
    compiled = system.compile()
    offsets = tuple(int(o) for o in compiled.offsets)
    prompts = random_prompts(tuple(compiled.prompts), offsets, 7)
    assert len(prompts) == compiled.n_prompts
    system_words = set(re.findall(r"[a-z]+", " ".join(compiled.prompts).lower()))
    for g, (a, b) in enumerate(zip(offsets[:-1], offsets[1:])):
        group = prompts[a:b]
        assert len(set(group)) == b - a  # distinct within the group
        words = [p.removeprefix(f"question {g} is ").removesuffix(".") for p in group]
        assert all(w in RANDOM_WORDS and w not in system_words for w in words), words
    assert random_prompts(tuple(compiled.prompts), offsets, 7) == prompts
    assert random_prompts(tuple(compiled.prompts), offsets, 8) != prompts


def test_question_frame_is_cut_at_word_edges():
    assert question_frame(["It looks like a bird.", "It looks like an insect."]) == ("It looks like ", ".")
    assert question_frame(["It is red.", "It is red hot."]) == ("It is ", ".")
    assert question_frame(["alone"]) == ("", "")


def test_groups_larger_than_the_word_list_get_word_pairs():
    n = len(RANDOM_WORDS) + 5
    prompts = tuple(f"q {i:04d}" for i in range(n))
    drawn = random_prompts(prompts, (0, n), 0)
    assert len(set(drawn)) == n and any(len(p.split()) == 3 for p in drawn)


@pytest.mark.parametrize("seeds", [[], "0,1", [1.5], [-1], [2**32], [True]])
def test_bad_random_seeds_are_input_errors(seeds):
    with pytest.raises(InputError, match="random_seeds"):
        random_seeds(ScoringConfig(10.0, method_options={"random_seeds": seeds}))


def test_random_control_reports_every_seed_with_mean_and_spread():
    rng = np.random.default_rng(6)
    system = random_system(rng, groups=4, options=6, classes=20)
    data = synthetic_set(system, per_class=10, rng=rng)
    s = scorer(system, ("cot", "random-control", "dclip", "cot-log", "ensemble"), random_seeds=[3, 1, 4])
    report = evaluate(s, data)
    result = report.methods["random-control"]
    assert isinstance(result, SeededResult) and list(result.runs) == [3, 1, 4]
    accs = [r.acc1 for r in result.runs.values()]
    assert result.acc1 == pytest.approx(np.mean(accs))
    payload = report.to_dict()
    rc = payload["methods"]["random-control"]
    assert rc["spread"]["acc1"] == pytest.approx({"mean": np.mean(accs), "std": np.std(accs, ddof=1), "min": min(accs), "max": max(accs)})
    assert set(rc["seeds"]) == {"3", "1", "4"} and all("confusion" in run for run in rc["seeds"].values())
    assert rc["text_prompts"] == system.compile().n_prompts and rc["total"] == len(data)
    assert np.asarray(rc["confusion"]["matrix"]).sum() == 3 * len(data)
    assert payload["method_options"]["random_seeds"] == [3, 1, 4] and payload["method_options"]["templates"]
    json.dumps(payload, allow_nan=False)
    # The rules are true of the data and the words are not: knowledge, not ensembling, carries cot.
    assert report.methods["cot"].acc1 > 0.9 and result.acc1 < 0.3
    assert report.methods["dclip"].acc1 > 0.9 and report.methods["cot-log"].acc1 > 0.9
    text = eval_table(report)
    assert re.search(r"random-control\s+\d+\.\d\d% ± \d+\.\d\d", text) and "over 3 seeds (3, 1, 4)" in text


# ---------------------------------------------------------------------- CLI
def test_eval_runs_the_whole_zoo_from_one_encoding_pass(capsys, tmp_path, colour_model):
    system = tmp_path / "colours.yaml"
    system.write_text(yaml.safe_dump(COLOUR_SYSTEM), encoding="utf-8")
    templates = tmp_path / "templates.txt"
    templates.write_text("# two templates\na photo of a {}\n\nart of the {}\n", encoding="utf-8")
    data = make_image_folder(tmp_path / "data", per_class=2)
    argv = ["eval", system, data, "--model", colour_model, "--no-cache", "-q", "--format", "json",
            "--methods", "baseline,cot," + ",".join(ZOO), "--templates", templates, "--random-seeds", "0,1,2"]
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    methods = report["methods"]
    assert list(methods) == ["baseline", "cot", *ZOO]
    assert methods["ensemble"]["text_prompts"] == 2 * 4 and methods["random-control"]["n_seeds"] == 3
    assert methods["dclip"]["acc1"] == methods["cot"]["acc1"] == 1.0
    assert report["method_options"] == {"templates": ["a photo of a {}", "art of the {}"], "random_seeds": [0, 1, 2],
                                        "random_words": len(RANDOM_WORDS)}
    for m in methods.values():
        assert {"acc1", "acc5", "mean_per_class_recall", "ece", "confusion"} <= set(m)
    csv_path = tmp_path / "rows.csv"
    assert main([str(a) for a in argv[:-2] + ["--output", csv_path]]) == 0
    capsys.readouterr()
    assert "acc1_std" in csv_path.read_text().splitlines()[0]


def test_eval_uses_the_system_files_templates_unless_the_flag_is_given(capsys, tmp_path, colour_model):
    system = tmp_path / "colours.yaml"
    system.write_text(yaml.safe_dump({**COLOUR_SYSTEM, "templates": ["a photo of a {}", "a drawing of a {}", "{}"]}),
                      encoding="utf-8")
    templates = tmp_path / "templates.txt"
    templates.write_text("art of the {}\n", encoding="utf-8")
    data = make_image_folder(tmp_path / "data", per_class=1)
    argv = [str(a) for a in ["eval", system, data, "--model", colour_model, "--no-cache", "-q", "--format", "json",
                             "--methods", "ensemble"]]
    runs = {}
    for extra in ([], ["--templates", str(templates)]):
        assert main(argv + extra) == 0
        runs[bool(extra)] = json.loads(capsys.readouterr().out)
    assert runs[False]["method_options"]["templates"] == ["a photo of a {}", "a drawing of a {}", "{}"]
    assert runs[False]["methods"]["ensemble"]["text_prompts"] == 3 * 4
    assert runs[True]["method_options"]["templates"] == ["art of the {}"]
    assert runs[True]["methods"]["ensemble"]["text_prompts"] == 1 * 4
    assert runs[True]["system"]["hash"] == runs[False]["system"]["hash"] == System.load(system).fingerprint


def test_bad_templates_file_exits_2_naming_file_and_line(capsys, tmp_path, colour_model):
    system = tmp_path / "colours.yaml"
    system.write_text(yaml.safe_dump(COLOUR_SYSTEM), encoding="utf-8")
    templates = tmp_path / "templates.txt"
    templates.write_text("a photo of a {}\nno placeholder here\n", encoding="utf-8")
    data = make_image_folder(tmp_path / "data", per_class=1)
    code = main([str(a) for a in ["eval", system, data, "--model", colour_model, "--no-cache", "-q",
                                  "--methods", "ensemble", "--templates", templates]])
    err = capsys.readouterr().err
    assert code == 2 and str(templates) in err and "line 2" in err
    code = main([str(a) for a in ["eval", system, data, "--model", colour_model, "--random-seeds", "1,x"]])
    assert code == 2 and "--random-seeds" in capsys.readouterr().err


def test_random_control_reports_calibrated_probabilities_like_cot():
    """Each seed's probabilities are cot's product-of-groups posterior on that seed's random prompts,
    so its ECE compares with cot's like for like; normalised mode keeps the rescaled scores."""
    from cotembed.scoring import _calibration as cal
    from cotembed.scoring._zoo import random_set_name

    rng = np.random.default_rng(8)
    system = random_system(rng, groups=3, options=5, classes=12)
    data = synthetic_set(system, per_class=6, rng=rng)
    s = scorer(system, ("random-control",), random_seeds=[2, 5])
    batch = s.batch(data.embeddings)
    method = s.method("random-control")
    rules = cal.GroupRules.from_compiled(s.compiled)
    for seed in (2, 5):
        expected = cal.product_posterior(batch[random_set_name(seed)], rules, 20.0)
        np.testing.assert_allclose(method.posterior_seed(batch, seed), expected, rtol=1e-5, atol=1e-9)
    calibrated = evaluate(s, data, ["random-control"]).methods["random-control"]
    labels = data.label_indices(s.class_names)

    def ece(seed: int) -> float:  # of the predicted class's probability, as eval's ECE
        predicted = method.score_seed(batch, seed).argmax(axis=1)
        confidence = method.posterior_seed(batch, seed)[np.arange(len(labels)), predicted]
        bins = np.minimum((confidence * 15).astype(int), 14)
        gaps = np.bincount(bins, confidence, 15) - np.bincount(bins, (predicted == labels).astype(float), 15)
        return float(np.abs(gaps).sum() / len(labels))

    assert calibrated.ece == pytest.approx(np.mean([ece(2), ece(5)]))
    normalised_scorer = Scorer.build(system, hashed_embed, ScoringConfig(20.0, probabilities="normalised",
                                                                         method_options={"random_seeds": [2, 5]}),
                                     ("random-control",))
    normalised = evaluate(normalised_scorer, data, ["random-control"]).methods["random-control"]
    assert normalised.ece != pytest.approx(calibrated.ece)
