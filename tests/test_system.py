"""Systems: the seed's shape loads, every validation error names its path."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from cotembed.system import System, SystemValidationError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

BASE = {
    "classification_cot": {
        "colour": {"prompt": "It is {}.", "options": ["red", "blue", "green"]},
        "shape": {"prompt": "It looks like {}.", "options": ["a ball", "a box"]},
    },
    "pokemon_rules": {
        "Alpha": {"colour": 0, "shape": "a box"},
        "Beta": {"colour": ["red", 2], "shape": 0},
    },
}


def problems_of(data) -> list[str]:
    with pytest.raises(SystemValidationError) as info:
        System.from_dict(data, source="sys.yaml")
    assert "sys.yaml" in str(info.value)
    return info.value.problems


def mutate(fn):
    data = copy.deepcopy(BASE)
    fn(data)
    return data


def test_seed_shape_loads_and_resolves_rules():
    system = System.from_dict(BASE)
    assert system.class_names == ("Alpha", "Beta")
    assert system.rules["Alpha"] == {"colour": (0,), "shape": (1,)}
    assert system.rules["Beta"] == {"colour": (0, 2), "shape": (0,)}
    assert system.n_prompts == 5
    assert system.baseline_prompt == "{}"


def test_canonical_keys_and_roundtrip(tmp_path):
    system = System.from_dict(BASE)
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"s{suffix}"
        system.save(path)
        again = System.load(path)
        assert again == system
        assert again.hash == system.hash
    assert "groups" in system.to_dict() and "rules" in system.to_dict()


def test_compile_builds_rule_matrix_with_weights():
    data = mutate(lambda d: d["classification_cot"]["shape"].update(weight=2.5))
    compiled = System.from_dict(data).compile()
    assert compiled.prompts == ("It is red.", "It is blue.", "It is green.", "It looks like a ball.", "It looks like a box.")
    assert compiled.offsets.tolist() == [0, 3, 5]
    expected = np.array([[1, 1], [0, 0], [0, 1], [0, 2.5], [2.5, 0]], dtype=np.float32)
    np.testing.assert_array_equal(compiled.rule_matrix, expected)
    assert compiled.baseline_prompts == ("Alpha", "Beta")


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: d["pokemon_rules"]["Alpha"].update(colour=12), "rules.Alpha.colour: option 12 out of range (group has 3 options)"),
        (lambda d: d["pokemon_rules"]["Alpha"].update(colour="purple"), "rules.Alpha.colour: option 'purple' is not one of the group's options"),
        (lambda d: d["classification_cot"]["colour"].update(prompt="It is red."), "groups.colour.prompt: prompt must contain exactly one '{}' (found 0)"),
        (lambda d: d["classification_cot"]["colour"].update(prompt="{} and {}"), "groups.colour.prompt: prompt must contain exactly one '{}' (found 2)"),
        (lambda d: d["classification_cot"]["colour"].update(options=[]), "groups.colour.options: must be a non-empty list"),
        (lambda d: d["classification_cot"]["colour"]["options"].append(""), "groups.colour.options[3]: option must be a non-empty string"),
        (lambda d: d["classification_cot"]["colour"]["options"].append("red"), "groups.colour.options[3]: duplicate option 'red' (same as options[0])"),
        (lambda d: d["pokemon_rules"]["Alpha"].update(size=0), "rules.Alpha.size: unknown group"),
        (lambda d: d["pokemon_rules"]["Alpha"].pop("shape"), "rules.Alpha: missing group 'shape'"),
        (lambda d: d["pokemon_rules"].update(alpha={"colour": 1, "shape": 1}), "rules.alpha: duplicate class (same as 'Alpha')"),
        (lambda d: d["classification_cot"]["shape"].update(weight=0), "groups.shape.weight: must be a positive finite number, got 0"),
        (lambda d: d["classification_cot"]["shape"].update(weight=-1.5), "groups.shape.weight: must be a positive finite number, got -1.5"),
        (lambda d: d.update(temperature=0), "temperature: must be a positive finite number, got 0"),
        (lambda d: d.update(temperature="hot"), "temperature: must be a number, got 'hot'"),
        (lambda d: d.update(baseline_prompt="a photo"), "baseline_prompt: prompt must contain exactly one '{}'"),
        (lambda d: d.pop("pokemon_rules"), "missing rules (expected one of: rules, pokemon_rules)"),
        (lambda d: d.update(rules={}), "rules given twice (rules and pokemon_rules); keep one"),
        (lambda d: d.update(colour_groups=1), "top level: unknown field(s) colour_groups"),
    ],
)
def test_each_validation_error_names_its_path(change, expected):
    problems = problems_of(mutate(change))
    assert any(p.startswith(expected) for p in problems), problems


def test_all_problems_are_reported_at_once():
    def change(d):
        d["pokemon_rules"]["Alpha"]["colour"] = 9
        d["pokemon_rules"]["Beta"]["shape"] = "a cone"
        d["temperature"] = -2

    problems = problems_of(mutate(change))
    assert [p.split(":")[0] for p in problems] == ["rules.Alpha.colour", "rules.Beta.shape", "temperature"]


def test_malformed_yaml_reports_line_number(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("groups:\n  colour:\n    prompt: 'It is {}.'\n    options: [red, blue\nrules: {}\n", encoding="utf-8")
    with pytest.raises(SystemValidationError) as info:
        System.load(path)
    assert str(path) in str(info.value)
    assert "malformed YAML" in info.value.problems[0] and "line " in info.value.problems[0]


def test_duplicate_class_key_in_yaml_is_caught(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(
        "groups:\n  c:\n    prompt: '{}'\n    options: [a, b]\nrules:\n  X: {c: a}\n  X: {c: b}\n", encoding="utf-8"
    )
    with pytest.raises(SystemValidationError) as info:
        System.load(path)
    assert info.value.problems == ["line 7: duplicate key 'X'"]


def test_malformed_json_reports_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "groups": {,\n}', encoding="utf-8")
    with pytest.raises(SystemValidationError) as info:
        System.load(path)
    assert info.value.problems[0].startswith("line 2, column")


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(SystemValidationError, match="cannot read file"):
        System.load(tmp_path / "nope.yaml")


def test_pokemon_example_matches_the_article():
    system = System.load(EXAMPLES / "pokemon" / "system.yaml")
    assert len(system.class_names) == 16
    assert [g.name for g in system.groups] == ["dominant_color", "primary_form", "key_trait", "body_shape", "background_scene"]
    opts = {g.name: g.options for g in system.groups}
    # The two rules the article prints verbatim.
    assert system.rules["Absol"] == {"dominant_color": (0,), "primary_form": (0,), "key_trait": (0,), "body_shape": (0,), "background_scene": (2,)}
    assert system.rules["Absol G"]["background_scene"] == (opts["background_scene"].index("outer space"),)
    assert opts["dominant_color"][system.rules["Dratini"]["dominant_color"][0]] == "light blue"
    assert ["Bulbasaur", "Venusaur", "Celebi & Venusaur"] in system.identical_rules()


def test_seed_dict_and_yaml_are_the_same_system():
    seed = json.loads((EXAMPLES / "pokemon" / "seed_dict.json").read_text(encoding="utf-8"))
    assert "classification_cot" in seed and "pokemon_rules" in seed
    from_seed = System.from_dict(seed)
    from_yaml = System.load(EXAMPLES / "pokemon" / "system.yaml")
    assert from_seed.groups == from_yaml.groups
    assert dict(from_seed.rules) == dict(from_yaml.rules)


def test_resolve_label_uses_case_and_aliases():
    data = mutate(lambda d: d.update(aliases={"Alpha": ["first", "A1"]}))
    system = System.from_dict(data)
    assert system.resolve_label("alpha") == "Alpha"
    assert system.resolve_label("a1") == "Alpha"
    assert system.resolve_label("Gamma") is None
