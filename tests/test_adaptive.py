"""Adaptive questioning: the policy's posterior, its choice of question, its stops, fitted
answer models, the evaluate hook, and the CLI flags (classify, eval, explain)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from cotembed._adaptive import (
    DEFAULT_CONFIDENCE,
    STOP_REASONS,
    AdaptiveSettings,
    AnswerModel,
    fit_answer_model,
    ideal_answers,
    run_policy,
    trace,
)
from cotembed.errors import InputError
from cotembed.evaluation._evaluate import evaluate
from cotembed.scoring import Scorer, ScoringConfig, get_method
from cotembed.system import System
from support import make_image_folder
from support import run_cli as run
from synthetic import hashed_embed, random_system, synthetic_set


def system_of(groups: dict[str, list[str]], rules: dict[str, dict[str, object]]) -> System:
    return System.from_dict({"name": "t", "groups": {g: {"prompt": "it is {}.", "options": o} for g, o in groups.items()},
                             "rules": rules})


def answers(compiled, rows: list[dict[str, list[float]]]) -> np.ndarray:
    """(B, Q) log probabilities from per-group probability lists."""
    return np.log(np.asarray([np.concatenate([row[g] for g in compiled.group_names]) for row in rows], dtype=np.float64))


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


# Four classes; "fine" tells all four apart, "coarse" only halves them.
FOUR = system_of(
    {"coarse": ["big", "small"], "fine": ["a", "b", "c", "d"]},
    {"A": {"coarse": "big", "fine": "a"}, "B": {"coarse": "big", "fine": "b"},
     "C": {"coarse": "small", "fine": "c"}, "D": {"coarse": "small", "fine": "d"}},
)


def test_the_most_informative_question_comes_first_and_a_sure_answer_stops():
    compiled = FOUR.compile()
    x = answers(compiled, [{"coarse": [0.9, 0.1], "fine": [0.97, 0.01, 0.01, 0.01]}])
    run = run_policy(x, compiled, AdaptiveSettings(confidence=0.9))
    # "fine" splits the uniform prior four ways (2 bits), "coarse" two ways (1 bit): fine first,
    # though listed second; after its sure answer the posterior is confident and coarse is never read.
    assert run.order[0, 0] == compiled.group_names.index("fine")
    assert math.isclose(run.gain[0, 0], math.log(4), rel_tol=1e-9)
    assert run.questions.tolist() == [1] and STOP_REASONS[run.stop[0]] == "confident"
    assert run.prompts.tolist() == [4]  # the text prompts of the one group consulted
    assert np.exp(run.log_posterior[0]).argmax() == 0


def test_posterior_is_the_product_of_the_asked_groups_probabilities():
    """Asked everything (confidence 1 is never reached here), the posterior is cot-log's product, normalised."""
    system = random_system(np.random.default_rng(3), groups=4, options=4, classes=10, multi=True, weights=[1, 2, 0.5, 1])
    data = synthetic_set(system, 3, np.random.default_rng(4), noise=1.5)
    config = ScoringConfig(2.0, method_options={"adaptive_confidence": 1.0})
    scorer = Scorer.build(system, hashed_embed, config, ("cot-log", "adaptive"))
    adaptive = scorer.scores(data.embeddings, "adaptive")
    product = log_softmax(scorer.scores(data.embeddings, "cot-log").astype(np.float64))
    batch = scorer.batch(data.embeddings)
    run = get_method("adaptive").run(batch)
    everything = run.questions == len(system.groups)
    assert everything.mean() > 0.5  # most inputs asked every question at this temperature
    np.testing.assert_allclose(adaptive[everything], product[everything], atol=1e-3)
    probs = get_method("adaptive").probabilities(adaptive, config)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_terms_add_up_to_the_score_and_unasked_groups_contribute_nothing():
    system = random_system(np.random.default_rng(5), groups=5, options=3, classes=9)
    data = synthetic_set(system, 2, np.random.default_rng(6), noise=0.4)
    scorer = Scorer.build(system, hashed_embed, ScoringConfig(20.0), ("adaptive",))
    batch = scorer.batch(data.embeddings)
    method = get_method("adaptive")
    terms = method.terms(batch)
    np.testing.assert_allclose(sum(terms.values()), method.score(batch), atol=1e-4)
    asked = method.run(batch).asked
    for g, name in enumerate(system.group_names):
        assert not terms[name][~asked[:, g]].any()


def test_rows_are_independent_of_the_batch_they_are_scored_in():
    system = random_system(np.random.default_rng(7), groups=4, options=5, classes=12)
    data = synthetic_set(system, 4, np.random.default_rng(8), noise=0.8)
    scorer = Scorer.build(system, hashed_embed, ScoringConfig(10.0), ("adaptive",))
    whole = scorer.scores(data.embeddings, "adaptive")
    one_by_one = scorer.scores(data.embeddings, "adaptive", chunk=1)
    np.testing.assert_allclose(whole, one_by_one, atol=1e-5)


def test_budget_caps_the_questions_of_every_input():
    system = random_system(np.random.default_rng(9), groups=6, options=3, classes=14)
    data = synthetic_set(system, 3, np.random.default_rng(10), noise=2.0)
    scorer = Scorer.build(system, hashed_embed, ScoringConfig(5.0), ("cot",))
    x = scorer.batch(data.embeddings).option_log_probs
    run = run_policy(x, scorer.compiled, AdaptiveSettings(confidence=0.999, max_questions=2))
    assert run.questions.max() == 2
    assert {STOP_REASONS[s] for s in run.stop[run.questions == 2]} <= {"budget", "confident"}
    assert "budget" in {STOP_REASONS[s] for s in run.stop}


def test_indistinguishable_classes_stop_with_no_gain_instead_of_asking_on():
    system = system_of(
        {"colour": ["red", "blue"], "size": ["big", "small"], "shape": ["round", "square"]},
        # X and Y share every rule: once the colour says red, nothing else can separate them.
        {"X": {"colour": "red", "size": "big", "shape": "round"}, "Y": {"colour": "red", "size": "big", "shape": "round"},
         "Z": {"colour": "blue", "size": "small", "shape": "square"}},
    )
    compiled = system.compile()
    x = answers(compiled, [{"colour": [1 - 1e-5, 1e-5], "size": [0.5, 0.5], "shape": [0.5, 0.5]}])
    run = run_policy(x, compiled, AdaptiveSettings(confidence=0.9))
    assert run.questions.tolist() == [1] and STOP_REASONS[run.stop[0]] == "no gain"
    np.testing.assert_allclose(np.exp(run.log_posterior[0, :2]), 0.5, atol=1e-3)


# One question in three wordings: the first answers at random, the other two mostly right.
REDUNDANT = system_of(
    {"noisy": ["a", "b", "c", "d"], "clear": ["a", "b", "c", "d"], "clear2": ["a", "b", "c", "d"]},
    {c: {"noisy": o, "clear": o, "clear2": o} for c, o in zip("ABCD", "abcd")},
)


def redundant_answers(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, 12) option probabilities and labels."""
    labels = rng.integers(0, 4, size=n)

    def clear() -> np.ndarray:
        right = np.where(rng.random(n) < 0.9, labels, rng.integers(0, 4, size=n))
        out = np.full((n, 4), 0.02)
        out[np.arange(n), right] = 0.94
        return out

    noisy = rng.dirichlet(np.full(4, 0.3), size=n)
    return np.concatenate([noisy, clear(), clear()], axis=1), labels


def test_ideal_model_ties_go_to_the_group_listed_first():
    compiled = REDUNDANT.compile()
    probs, _ = redundant_answers(np.random.default_rng(0), 5)
    run = run_policy(np.log(probs), compiled, AdaptiveSettings())
    assert (run.order[:, 0] == 0).all()  # both questions ask the same thing: the listed-first one wins


@pytest.mark.parametrize("use_labels", [True, False])
def test_fitted_answer_model_asks_the_reliable_wording_first(use_labels):
    compiled = REDUNDANT.compile()
    rng = np.random.default_rng(1)
    fit_probs, fit_labels = redundant_answers(rng, 400)
    model = fit_answer_model(fit_probs, compiled, fit_labels if use_labels else None)
    assert model.source == ("labelled" if use_labels else "unlabelled")
    reliability = model.reliability(compiled)
    assert min(reliability["clear"], reliability["clear2"]) > 0.8 and reliability["noisy"] < 0.45
    probs, labels = redundant_answers(rng, 200)
    ideal = run_policy(np.log(probs), compiled, AdaptiveSettings())
    fitted = run_policy(np.log(probs), compiled, AdaptiveSettings(answer_model=model))
    assert (fitted.order[:, 0] != 0).all() and (ideal.order[:, 0] == 0).all()
    accuracy = {name: (r.log_posterior.argmax(axis=1) == labels).mean() for name, r in (("ideal", ideal), ("fitted", fitted))}
    assert accuracy["fitted"] > 0.85 > accuracy["ideal"] + 0.1


def test_answer_model_rows_are_distributions_and_pool_classes_that_share_an_option():
    system = system_of({"g": ["x", "y"]}, {"A": {"g": "x"}, "B": {"g": "x"}, "C": {"g": "y"}})
    compiled = system.compile()
    np.testing.assert_allclose(ideal_answers(compiled), [[1, 0], [1, 0], [0, 1]])
    probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    model = fit_answer_model(probs, compiled, np.array([0, 1, 2]))
    np.testing.assert_allclose(model.answers.sum(axis=1), 1.0)
    np.testing.assert_allclose(model.answers[0], model.answers[1])  # A's and B's inputs pooled
    assert model.answers[0, 0] > model.answers[2, 0]


def test_a_model_fitted_for_another_system_is_refused():
    model = AnswerModel.ideal(FOUR.compile())
    with pytest.raises(InputError, match="fitted for another system"):
        run_policy(np.zeros((1, REDUNDANT.compile().n_prompts)), REDUNDANT.compile(), AdaptiveSettings(answer_model=model))


@pytest.mark.parametrize("options", [
    {"adaptive_confidence": 0}, {"adaptive_confidence": 1.5}, {"adaptive_confidence": float("nan")},
    {"adaptive_confidence": True}, {"adaptive_confidence": "0.9"}, {"adaptive_max_questions": 0},
    {"adaptive_max_questions": 1.5}, {"adaptive_max_questions": True}, {"adaptive_answer_model": "ideal"},
    {"adaptive_confidance": 0.9},
])
def test_bad_settings_are_input_errors_naming_the_option(options):
    with pytest.raises(InputError, match=next(iter(options)).removeprefix("adaptive_")):
        ScoringConfig(10.0, method_options=options).method("adaptive")


def test_fit_rejects_non_finite_answers_and_bad_labels():
    compiled = FOUR.compile()
    good = np.full((2, compiled.n_prompts), 0.25)
    bad = good.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        fit_answer_model(bad, compiled)
    with pytest.raises(InputError, match="class indices"):
        fit_answer_model(good, compiled, np.array([0, 9]))
    with pytest.raises(InputError, match="shape"):
        fit_answer_model(good[:, :3], compiled)


def test_trace_explains_each_step():
    compiled = FOUR.compile()
    x = answers(compiled, [{"coarse": [0.8, 0.2], "fine": [0.6, 0.3, 0.05, 0.05]}])
    options = [g.options for g in FOUR.groups]
    t = trace(x[0], compiled, ScoringConfig(10.0, method_options={"adaptive_confidence": 0.95}), options)
    assert [s.group for s in t.steps] == ["fine", "coarse"]
    first = t.steps[0]
    assert first.answer == "a" and math.isclose(first.gain_bits, 2.0) and first.runner_up == "coarse"
    assert math.isclose(first.runner_up_gain_bits, 1.0)
    assert first.leader == "A" and math.isclose(first.leader_probability, 0.6, rel_tol=1e-6)
    data = t.to_dict()
    assert data["questions_asked"] == 2 and data["text_prompts_consulted"] == 6 and data["stopped"] == "all asked"
    assert data["not_asked"] == [] and data["answer_model"] == {"source": "ideal"}


def test_evaluate_reports_questions_and_prompts_consulted():
    system = random_system(np.random.default_rng(11), groups=5, options=4, classes=12)
    data = synthetic_set(system, 4, np.random.default_rng(12), noise=0.3)
    scorer = Scorer.build(system, hashed_embed, ScoringConfig(30.0), ("cot", "adaptive"))
    report = evaluate(scorer, data, ("cot", "adaptive"))
    run = scorer.prepare(data.embeddings).method("adaptive").run(scorer.batch(data.embeddings))
    extra = report.to_dict()["methods"]["adaptive"]["extra"]
    assert extra["mean_questions"] == pytest.approx(run.questions.mean())
    assert extra["mean_prompts"] == pytest.approx(run.prompts.mean())
    assert 1 <= extra["mean_questions"] < 5
    assert "extra" not in report.to_dict()["methods"]["cot"]
    assert report.method_options["adaptive_confidence"] == DEFAULT_CONFIDENCE
    assert report.method_options["adaptive_answer_model"]["source"] == "batch"  # fitted on the batch, no labels


# ------------------------------------------------------------------------ CLI
TWO_QUESTIONS = {
    "name": "colours-2q",
    "groups": {
        "colour": {"prompt": "a photo of something {}", "options": ["red", "green", "blue", "yellow"]},
        "warmth": {"prompt": "something {}", "options": ["red yellow", "green blue"]},
    },
    "rules": {
        "red-thing": {"colour": "red", "warmth": "red yellow"},
        "green-thing": {"colour": "green", "warmth": "green blue"},
        "blue-thing": {"colour": "blue", "warmth": "green blue"},
        "yellow-thing": {"colour": "yellow", "warmth": "red yellow"},
    },
}


@pytest.fixture
def two_questions(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(TWO_QUESTIONS), encoding="utf-8")
    return path


def test_eval_adaptive_compares_with_the_full_system(capsys, tmp_path, two_questions, colour_model):
    data = make_image_folder(tmp_path / "data", per_class=3)
    common = ("--model", colour_model, "--no-cache", "-q")
    code, out, err = run(capsys, "eval", two_questions, data, "--adaptive", "--format", "json", *common)
    assert code == 0, err
    report = json.loads(out)
    assert list(report["methods"]) == ["cot", "cot-log", "adaptive"]
    adaptive = report["methods"]["adaptive"]
    assert adaptive["accuracy"] == report["methods"]["cot"]["accuracy"] == 1.0
    assert adaptive["extra"]["mean_questions"] == 1.0  # the colour answers alone are confident
    assert adaptive["extra"]["mean_prompts"] == 4.0
    model = report["method_options"]["adaptive_answer_model"]
    assert model["source"] == "batch" and model["n_inputs"] == 12  # fitted on the inputs themselves, no labels read
    code, out, err = run(capsys, "eval", two_questions, data, "--adaptive", "--no-batch-calibration", "--format", "json", *common)
    assert code == 0, err
    assert json.loads(out)["method_options"]["adaptive_answer_model"] == {"source": "ideal"}
    code, out, _ = run(capsys, "eval", two_questions, data, "--methods", "baseline", "--adaptive", "--confidence", "0.99", *common)
    assert code == 0
    assert "adaptive: per input 1.00 questions of 2 (50%), 4.00 text prompts of 6 (67%)" in out
    assert any(line.startswith("baseline") for line in out.splitlines())


def test_eval_calibrate_fits_the_answer_model_with_or_without_labels(capsys, tmp_path, two_questions, colour_model):
    data = make_image_folder(tmp_path / "data", per_class=2)
    cal = make_image_folder(tmp_path / "cal", per_class=2)
    common = ("--model", colour_model, "--no-cache", "-q", "--adaptive", "--format", "json", "--calibrate", cal)
    code, out, err = run(capsys, "eval", two_questions, data, *common)
    assert code == 0, err
    options = json.loads(out)["method_options"]
    assert options["adaptive_answer_model"] == {"source": "labelled", "n_inputs": 8}
    assert options["adaptive_calibration_data"] == [str(cal)]
    code, out, err = run(capsys, "eval", two_questions, data, *common, "--calibrate-without-labels")
    assert code == 0, err
    model = json.loads(out)["method_options"]["adaptive_answer_model"]
    assert model["source"] == "unlabelled" and model["iterations"] >= 1


def test_explain_adaptive_shows_the_questions_in_order(capsys, tmp_path, two_questions, colour_model):
    image = make_image_folder(tmp_path / "data", per_class=1) / "blue-thing" / "0.png"
    code, out, err = run(capsys, "explain", two_questions, image, "--adaptive", "--model", colour_model, "--no-cache", "-q",
                         "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["prediction"] == data["adaptive"]["prediction"] == "blue-thing"
    steps = data["adaptive"]["steps"]
    assert [s["group"] for s in steps] == ["colour"] and steps[0]["answer"] == "blue"
    assert steps[0]["expected_gain_bits"] == pytest.approx(2.0) and steps[0]["runner_up"]["group"] == "warmth"
    assert data["adaptive"]["not_asked"][0]["group"] == "warmth"
    code, out, _ = run(capsys, "explain", two_questions, image, "--adaptive", "--model", colour_model, "--no-cache", "-q")
    assert code == 0
    assert "asked 1 of 2 questions (4 of 6 text prompts); stopped: posterior" in out
    assert "not asked (gain at the stop, bits): warmth" in out


def test_classify_adaptive_and_its_flags(capsys, tmp_path, two_questions, colour_model):
    image = make_image_folder(tmp_path / "data", per_class=1) / "red-thing" / "0.png"
    common = ("--model", colour_model, "--no-cache", "-q")
    code, out, err = run(capsys, "classify", two_questions, image, "--adaptive", "--max-questions", "1", "--format", "json", *common)
    assert code == 0, err
    payload = json.loads(out)
    assert payload["method"] == "adaptive" and payload["predictions"][0]["prediction"] == "red-thing"
    assert payload["method_options"]["adaptive_max_questions"] == 1


@pytest.mark.parametrize("argv, message", [
    (("--confidence", "0.9"), "--confidence: only for adaptive questioning; add --adaptive"),
    (("--adaptive", "--confidence", "0"), "must be in (0, 1]"),
    (("--adaptive", "--confidence", "inf"), "must be a finite number"),
    (("--adaptive", "--max-questions", "0"), "--max-questions: must be between 1"),
    (("--adaptive", "--method", "baseline"), "--adaptive and --method baseline: choose one"),
    (("--adaptive", "--calibrate-without-labels"), "--calibrate-without-labels needs --calibrate DATA"),
])
def test_bad_adaptive_flags_exit_2(capsys, tmp_path, two_questions, colour_model, argv, message):
    image = make_image_folder(tmp_path / "data", per_class=1) / "red-thing" / "0.png"
    code, out, err = run(capsys, "classify", two_questions, image, "--model", colour_model, "--no-cache", "-q", *argv)
    assert code == 2 and out == "" and message in err


def test_calibration_data_with_unknown_labels_names_the_flag(capsys, tmp_path, two_questions, colour_model):
    data = make_image_folder(tmp_path / "data", per_class=1)
    cal = make_image_folder(tmp_path / "cal", per_class=1)
    (cal / "red-thing").rename(cal / "crimson-thing")
    code, out, err = run(capsys, "eval", two_questions, data, "--adaptive", "--calibrate", cal, "--model", colour_model, "--no-cache", "-q")
    assert code == 2 and out == ""
    assert f"--calibrate {cal}:" in err and "crimson-thing" in err


def test_redundant_critters_system_is_generated_from_the_species_and_the_two_systems():
    from pathlib import Path

    from cotembed_critters.species import load_species, redundant_system_from_species

    root = Path(__file__).resolve().parents[1] / "examples" / "critters"
    redundant = System.load(root / "system_redundant.yaml")
    assert redundant == System.from_dict(redundant_system_from_species(load_species(root / "species.yaml")))
    groups = {g.name: g for g in redundant.groups}
    for source, suffix in (("system.yaml", ""), ("system_paraphrased.yaml", "~1")):
        system = System.load(root / source)
        for g in system.groups:
            assert groups[g.name + suffix].options == g.options and groups[g.name + suffix].prompt == g.prompt
        for cls_name, rule in system.rules.items():
            assert all(redundant.rules[cls_name][g + suffix] == options for g, options in rule.items())
    assert len(redundant.groups) == 12 and not redundant.identical_rules()


# ------------------------------------------------------- calibrating on the batch
def test_batch_calibration_reads_no_label():
    """The answer model fitted on the batch is the same whatever the labels say."""
    from cotembed._embeddings import EmbeddingSet

    system = random_system(np.random.default_rng(21), groups=5, options=4, classes=8)
    data = synthetic_set(system, 6, np.random.default_rng(22), noise=0.6)
    shuffled = EmbeddingSet(data.embeddings, data.sources, list(np.random.default_rng(0).permutation(data.labels)), data.model_key)
    scorer = Scorer.build(system, hashed_embed, ScoringConfig(30.0), ("adaptive",))
    models = [evaluate(scorer, d, ("adaptive",)).method_options["adaptive_answer_model"] for d in (data, shuffled)]
    assert models[0]["source"] == "batch" and models[0] == models[1]
    fitted = [scorer.prepare(d.embeddings).method("adaptive").params["answer_model"].answers for d in (data, shuffled)]
    np.testing.assert_array_equal(*fitted)


def test_small_batches_and_the_switch_keep_the_training_free_model():
    system = random_system(np.random.default_rng(23), groups=4, options=3, classes=10)
    data = synthetic_set(system, 3, np.random.default_rng(24), noise=0.6)
    scorer = Scorer.build(system, hashed_embed, ScoringConfig(30.0), ("adaptive",))
    assert scorer.prepare(data.embeddings[:19]) is scorer  # < 2 inputs per class: nothing to learn from
    assert scorer.prepare(data.embeddings).method("adaptive").params["answer_model"].source == "batch"
    off = Scorer.build(system, hashed_embed, ScoringConfig(30.0, method_options={"adaptive_calibrate_on_batch": False}), ("adaptive",))
    assert off.prepare(data.embeddings) is off
    given = fit_answer_model(off.batch(data.embeddings).option_probs, off.compiled)
    explicit = off.with_methods([get_method("adaptive", answer_model=given)])
    assert explicit.prepare(data.embeddings).method("adaptive").params["answer_model"] is given  # calibration data wins


def test_classify_a_batch_calibrates_and_a_single_input_does_not(capsys, tmp_path, two_questions, colour_model):
    folder = make_image_folder(tmp_path / "data", per_class=2)
    common = ("--model", colour_model, "--no-cache", "-q", "--adaptive", "--format", "json")
    code, out, err = run(capsys, "classify", two_questions, folder, *common)
    assert code == 0, err
    model = json.loads(out)["method_options"]["adaptive_answer_model"]
    assert model["source"] == "batch" and model["n_inputs"] == 8
    code, out, err = run(capsys, "classify", two_questions, folder / "red-thing" / "0.png", *common)
    assert code == 0, err
    assert json.loads(out)["method_options"]["adaptive_answer_model"] == {"source": "ideal"}


def test_fit_answer_model_on_collected_samples(tmp_path, two_questions):
    from cotembed._adaptive import fit_answer_model_on
    from cotembed._classifier import CoTClassifier
    from cotembed.data import collect_samples, resolve_labels
    from support import ColourEncoder

    system = System.load(two_questions)
    clf = CoTClassifier(system, ColourEncoder())
    samples, _ = resolve_labels(collect_samples([make_image_folder(tmp_path / "cal", per_class=2)]), system.resolve_label)
    counted = fit_answer_model_on(clf, samples)
    assert (counted.source, counted.n_inputs, counted.n_failed) == ("labelled", 8, 0)
    assert fit_answer_model_on(clf, samples, use_labels=False).source == "unlabelled"
    with pytest.raises(InputError, match="none of the methods cot learns"):
        clf.calibrated(samples, ("cot",))
