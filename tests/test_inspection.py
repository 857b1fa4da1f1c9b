"""inspect: what a system's rules can tell apart, and how a model answers its questions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from cotembed import EmbeddingSet, PromptBank, System, encoders
from cotembed.data import collect_samples
from cotembed.inspection import inspect_system, near_duplicate_options, static_report
from cotembed.scoring import ScoringConfig
from support import COLOURS, ColourEncoder, make_image_folder
from support import run_cli as run

ROOT = Path(__file__).resolve().parents[1]


def grid_system(**extra_groups: dict) -> System:
    """Four classes on two independent yes/no questions; option 'z' of g1 is used by no class."""
    groups = {"g1": {"prompt": "g1 {}", "options": ["x", "y", "z"]}, "g2": {"prompt": "g2 {}", "options": ["p", "q"]}}
    rules = {"A": {"g1": "x", "g2": "p"}, "B": {"g1": "x", "g2": "q"}, "C": {"g1": "y", "g2": "p"}, "D": {"g1": "y", "g2": "q"}}
    for name, (spec, rule) in extra_groups.items():
        groups[name] = spec
        for cls_name, value in rule.items():
            rules[cls_name][name] = value
    return System.from_dict({"groups": groups, "rules": rules})


# ------------------------------------------------------------------ static
def test_the_article_system_has_three_classes_no_question_separates():
    report = static_report(System.load(ROOT / "examples/pokemon/system.yaml"))
    assert report.identical == [["Bulbasaur", "Venusaur", "Celebi & Venusaur"]]
    # 16 classes, 14 distinct rules: the three twins share one class's worth of accuracy.
    assert report.ceiling == pytest.approx(14 / 16)
    assert set(report.ceiling_per_class) == {"Bulbasaur", "Venusaur", "Celebi & Venusaur"}
    assert all(v == pytest.approx(1 / 3) for v in report.ceiling_per_class.values())
    first = report.suggestions[0]
    assert first.kind == "identical-rules" and set(first.classes) == {"Bulbasaur", "Venusaur", "Celebi & Venusaur"}
    assert "add a question that separates Bulbasaur, Venusaur and Celebi & Venusaur" in first.text


def test_fragile_pairs_unused_options_entropy_and_independence():
    report = static_report(grid_system())
    pairs = {(f["a"], f["b"]): f["group"] for f in report.fragile}
    # A/B and C/D differ only in g2; A/C and B/D only in g1; A/D and B/C in both.
    assert pairs == {("A", "B"): "g2", ("C", "D"): "g2", ("A", "C"): "g1", ("B", "D"): "g1"}
    assert report.n_fragile == 4 and report.fragile_by_group == {"g1": 2, "g2": 2}
    assert report.unused_options == {"g1": ["z"]}
    assert report.single_class_options == {}
    assert [g.entropy_bits for g in report.groups] == pytest.approx([1.0, 1.0])
    assert report.class_entropy_bits == pytest.approx(2.0)
    assert report.redundancy[0][1] == pytest.approx(0.0, abs=1e-9)  # independent questions
    assert report.ceiling == pytest.approx(1.0) and report.identical == [] and report.inseparable == []
    kinds = {s.kind for s in report.suggestions}
    assert {"unused-option", "fragile"} <= kinds and "redundant" not in kinds


def test_a_group_that_repeats_another_is_redundant_and_repairs_fragility():
    copy = ({"prompt": "g3 {}", "options": ["one", "two"]}, {"A": "one", "B": "one", "C": "two", "D": "two"})
    report = static_report(grid_system(g3=copy))
    assert report.redundancy[0][2] == pytest.approx(1.0)
    assert report.redundant_pairs == [{"a": "g1", "b": "g3", "nmi": pytest.approx(1.0)}]
    assert any(s.kind == "redundant" and set(s.groups) == {"g1", "g3"} for s in report.suggestions)
    # g1 and g3 now both separate A from C, so only the g2 pairs remain fragile.
    assert report.fragile_by_group == {"g2": 2}


def test_multi_option_rules_count_fractionally_and_split_the_ceiling():
    system = System.from_dict({
        "groups": {"g": {"prompt": "{}", "options": ["x", "y", "w"]}},
        "rules": {"A": {"g": ["x", "y"]}, "B": {"g": "x"}, "C": {"g": "w"}},
    })
    report = static_report(system)
    # p(x) = (1/2 + 1) / 3, p(y) = (1/2) / 3, p(w) = 1/3
    p = np.array([0.5, 1 / 6, 1 / 3])
    assert report.groups[0].entropy_bits == pytest.approx(float(-(p * np.log2(p)).sum()))
    # A and B share 'x': not identical, but no answer separates them for sure.
    assert report.identical == [] and report.inseparable == [("A", "B")] and report.n_inseparable == 1
    # Oracle for A answers x (tie with B, 1/2) or y (alone, 1): 0.75. For B: x, tied with A: 0.5. C: 1.
    assert report.ceiling_per_class == {"A": pytest.approx(0.75), "B": pytest.approx(0.5)}
    assert report.ceiling == pytest.approx((0.75 + 0.5 + 1) / 3)
    assert report.single_class_options == {"g": [{"option": "y", "class": "A"}, {"option": "w", "class": "C"}]}


def test_static_report_is_json_safe():
    report = static_report(System.load(ROOT / "examples/critters/system_paraphrased.yaml"))
    payload = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert payload["n_fragile_pairs"] == 8 and payload["ceiling"] == 1.0
    assert math.isclose(payload["class_entropy_bits"], math.log2(28))


# ---------------------------------------------------------------- with data
COLOUR_INSPECT = {
    "groups": {
        "colour": {"prompt": "something {}", "options": ["red", "green", "blue", "yellow", "bright red"]},
        # Options naming no colour embed to hashed random directions: a question the model cannot answer.
        "mood": {"prompt": "it feels {}", "options": ["calm", "angry", "sleepy", "curious"]},
    },
    "rules": {
        "red-thing": {"colour": "red", "mood": "calm"},
        "green-thing": {"colour": "green", "mood": "angry"},
        "blue-thing": {"colour": "yellow", "mood": "sleepy"},  # wrong: blue things are blue
        "yellow-thing": {"colour": "yellow", "mood": "curious"},
    },
}


@pytest.fixture
def colour_data(tmp_path):
    encoder = ColourEncoder()
    folder = make_image_folder(tmp_path / "imgs", per_class=6)
    data = EmbeddingSet.from_samples(collect_samples([folder]), encoder)
    return encoder, data


def test_data_report_flags_chance_questions_wrong_rules_and_duplicates(colour_data):
    encoder, data = colour_data
    system = System.from_dict(COLOUR_INSPECT)
    result = inspect_system(system, embed=PromptBank(encoder).embed, data=data, config=ScoringConfig(50.0))
    questions = {q.group: q for q in result.data.questions}
    # Colour is answered right except for the class whose rule is wrong (and red vs 'bright red').
    assert questions["colour"].accuracy > 0.45 and not questions["colour"].weak
    assert questions["mood"].chance == pytest.approx(0.25)
    assert questions["mood"].weak  # random directions: at best barely above chance
    assert questions["mood"].accuracy <= 0.5
    # 'red' and 'bright red' name the same colour: identical prompt embeddings.
    assert [(d["a"], d["b"]) for d in result.near_duplicates] == [("red", "bright red")]
    assert result.near_duplicates[0]["cosine"] == pytest.approx(1.0)
    # The wrong rule: the model answers 'blue' for every blue image.
    disagreement = next(d for d in result.data.rule_disagreements if d["class"] == "blue-thing" and d["group"] == "colour")
    assert disagreement["answer"] == "blue" and disagreement["share"] == 1.0 and disagreement["rule"] == ["yellow"]
    confusion = next(c for c in result.data.confusions if c["true"] == "blue-thing")
    assert confusion["deciding_group"] == "colour" and "check blue-thing's rule in 'colour'" in confusion["suggestion"]
    kinds = [s.kind for s in result.suggestions]
    assert {"weak-question", "near-duplicate", "rule-disagreement", "confusion"} <= set(kinds)
    assert kinds.index("weak-question") < kinds.index("confusion")
    json.dumps(result.to_dict(), allow_nan=False)


def test_near_duplicate_threshold_is_checked_and_applied():
    system = System.from_dict(COLOUR_INSPECT)
    embed = PromptBank(ColourEncoder()).embed
    assert near_duplicate_options(system, embed, threshold=1.0)[0]["a"] == "red"
    assert len(near_duplicate_options(system, embed, threshold=-1.0)) == 10 + 6  # every pair of every group
    with pytest.raises(ValueError, match="cosine in"):
        near_duplicate_options(system, embed, threshold=float("nan"))


def test_inspecting_data_needs_embeddings_and_a_config(colour_data):
    _, data = colour_data
    with pytest.raises(ValueError, match="needs the model's prompt embeddings"):
        inspect_system(System.from_dict(COLOUR_INSPECT), data=data)


@pytest.mark.slow
def test_critters_paraphrased_questions_are_flagged_weak_and_caption_words_are_not(tmp_path):
    """On the hard split the paraphrased colour and trait questions are near chance; the caption-word ones are not."""
    from cotembed_critters.species import generate_split

    generate_split(ROOT / "examples/critters/species.yaml", tmp_path / "hard", 4, seed=2024, difficulty="hard", progress=False)
    encoder = encoders.load_encoder("critters")
    try:
        data = EmbeddingSet.from_samples(collect_samples([tmp_path / "hard"]), encoder)
        bank = PromptBank(encoder)
        config = ScoringConfig(float(encoder.logit_scale))
        weak = {}
        for name in ("system.yaml", "system_paraphrased.yaml"):
            result = inspect_system(System.load(ROOT / "examples/critters" / name), embed=bank.embed, data=data, config=config)
            weak[name] = {q.group for q in result.data.questions if q.weak}
    finally:
        encoder.close()
    assert {"colour", "trait"} <= weak["system_paraphrased.yaml"]
    assert "scene" not in weak["system_paraphrased.yaml"]
    assert weak["system.yaml"] == set()


# --------------------------------------------------------------------- CLI
def test_cli_inspect_static_table_and_json(capsys):
    code, out, _ = run(capsys, "inspect", ROOT / "examples/pokemon/system.yaml")
    assert code == 0
    assert "Bulbasaur, Venusaur, Celebi & Venusaur" in out and "ceiling (every question answered right, cot): 87.5%" in out
    code, out, _ = run(capsys, "inspect", ROOT / "examples/pokemon/system.yaml", "--format", "json")
    payload = json.loads(out)
    assert code == 0 and payload["static"]["identical_rules"] == [["Bulbasaur", "Venusaur", "Celebi & Venusaur"]]
    assert payload["data"] is None and payload["near_duplicates"] is None


def test_cli_inspect_with_model_and_data(capsys, tmp_path, colour_model):
    system_file = tmp_path / "s.yaml"
    system_file.write_text(yaml.safe_dump(COLOUR_INSPECT), encoding="utf-8")
    folder = make_image_folder(tmp_path / "imgs", per_class=4)
    code, out, _ = run(capsys, "inspect", system_file, "--model", colour_model, "--data", folder, "--no-cache", "-q", "--format", "json")
    payload = json.loads(out)
    assert code == 0
    assert payload["data"]["n_inputs"] == 4 * len(COLOURS)
    assert {q["group"]: q["weak"] for q in payload["data"]["questions"]}["mood"] is True
    code, out, _ = run(capsys, "inspect", system_file, "--model", colour_model, "--data", folder, "--no-cache", "-q")
    assert code == 0 and "question  accuracy  chance" in out and "near-duplicate options" in out


@pytest.mark.parametrize("argv, message", [
    (["--data", "IMGS"], "inspect --data needs --model"),
    (["--model", "test:colour", "--data", "IMGS", "--duplicate-threshold", "2"], "must be in [-1, 1]"),
    (["--model", "test:colour", "--data", "IMGS", "--weak-skill", "nan"], "must be a finite number"),
])
def test_cli_inspect_bad_input_exits_2(capsys, tmp_path, colour_model, argv, message):
    system_file = tmp_path / "s.yaml"
    system_file.write_text(yaml.safe_dump(COLOUR_INSPECT), encoding="utf-8")
    folder = make_image_folder(tmp_path / "imgs", per_class=1)
    code, _, err = run(capsys, "inspect", system_file, *[str(folder) if a == "IMGS" else a for a in argv], "--no-cache")
    assert code == 2 and message in err


def test_cli_inspect_unlabelled_data_exits_2(capsys, tmp_path, colour_model):
    system_file = tmp_path / "s.yaml"
    system_file.write_text(yaml.safe_dump(COLOUR_INSPECT), encoding="utf-8")
    image = make_image_folder(tmp_path / "imgs", per_class=1) / "red-thing" / "0.png"
    code, _, err = run(capsys, "inspect", system_file, "--model", colour_model, "--data", image, "--no-cache")
    assert code == 2 and "have no label" in err
