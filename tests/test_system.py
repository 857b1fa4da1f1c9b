"""Systems: the seed's shape loads, every validation error names its path."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

import cotembed.system._parse as system_parse
from cotembed.errors import InputError
from cotembed.system import Group, System, SystemValidationError, parse_system_text

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


# ------------------------------------------------------------ immutability
def test_system_is_read_only():
    system = System.from_dict(BASE)
    with pytest.raises(TypeError):
        system.rules["Alpha"] = {"colour": (1,), "shape": (1,)}  # type: ignore[index]
    with pytest.raises(TypeError):
        system.rules["Alpha"]["colour"] = (2,)  # type: ignore[index]
    with pytest.raises(TypeError):
        system.aliases["Alpha"] = ("a",)  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        system.name = "renamed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        system.groups[0].options = ("x",)  # type: ignore[misc]


def test_equal_content_is_equal_and_hashes_alike(tmp_path):
    one = System.from_dict(BASE)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(BASE), encoding="utf-8")
    two = System.load(path)
    assert one is not two and one == two and hash(one) == hash(two)
    assert len({one, two}) == 1 and {one: "x"}[two] == "x"
    assert one != System.from_dict(mutate(lambda d: d["pokemon_rules"]["Alpha"].update(colour=1)))


def rename_shape_group(d):
    d["classification_cot"]["size"] = d["classification_cot"].pop("shape")
    for rule in d["pokemon_rules"].values():
        rule["size"] = rule.pop("shape")


def test_fingerprint_follows_what_changes_scores():
    base = System.from_dict(BASE)
    assert len(base.fingerprint) == 16 and int(base.fingerprint, 16) >= 0
    assert base.hash == base.fingerprint
    same_scores = [
        lambda d: d.update(name="renamed", description="words"),
        lambda d: d.update(aliases={"Alpha": ["first"]}),
        lambda d: d["classification_cot"]["colour"].update(description="the main colour"),
        lambda d: d["pokemon_rules"]["Beta"].update(colour=[2, "red"]),  # same options, other order
        lambda d: d["classification_cot"]["shape"].update(weight=1),  # the default, written out
    ]
    for change in same_scores:
        assert System.from_dict(mutate(change)).fingerprint == base.fingerprint
    other_scores = [
        lambda d: d["classification_cot"]["colour"]["options"].__setitem__(1, "navy"),
        lambda d: d["classification_cot"]["colour"].update(prompt="Its colour is {}."),
        lambda d: d["classification_cot"]["shape"].update(weight=2),
        lambda d: d["pokemon_rules"]["Alpha"].update(colour=[0, 1]),
        lambda d: d.update(temperature=30),
        lambda d: d.update(baseline_prompt="a photo of {}"),
        lambda d: d.update(classification_cot=dict(reversed(list(d["classification_cot"].items())))),
        lambda d: d.update(pokemon_rules=dict(reversed(list(d["pokemon_rules"].items())))),
        rename_shape_group,
    ]
    prints = {System.from_dict(mutate(change)).fingerprint for change in other_scores}
    assert base.fingerprint not in prints and len(prints) == len(other_scores)


def test_compile_is_cached_and_read_only():
    system = System.from_dict(BASE)
    compiled = system.compile()
    assert system.compile() is compiled
    with pytest.raises(ValueError):
        compiled.rule_matrix[0, 0] = 5.0
    with pytest.raises(ValueError):
        compiled.offsets[0] = 1


def test_pickle_and_copy_keep_the_system():
    system = System.from_dict(mutate(lambda d: d.update(aliases={"Alpha": ["first"]}, temperature=7)))
    again = pickle.loads(pickle.dumps(system))
    assert again == system and again.fingerprint == system.fingerprint
    assert again.resolve_label("FIRST") == "Alpha"
    assert copy.deepcopy(system) is system  # immutable: a copy is the same object


def test_roundtrip_keeps_everything(tmp_path):
    data = {
        "name": "full",
        "description": "every optional field",
        "baseline_prompt": "a photo of {}",
        "temperature": 12.5,
        "groups": {
            "colour": {"prompt": "It is {}.", "options": ["red", "blue", "green"], "description": "the main colour"},
            "shape": {"prompt": "It looks like {}.", "options": ["a ball", "a box"], "weight": 2.5},
        },
        "rules": {"Alpha": {"colour": "red", "shape": "a box"}, "Beta": {"colour": ["red", "green"], "shape": "a ball"}},
        "aliases": {"Alpha": ["first", "A1"]},
    }
    system = System.from_dict(data)
    assert system.to_dict() == data
    assert system.groups[0].description == "the main colour"
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"s{suffix}"
        system.save(path)
        again = System.load(path)
        assert again == system and again.to_dict() == data


# ----------------------------------------------------- direct construction
COLOUR = Group("colour", "It is {}.", ("red", "blue", "green"))
SHAPE = Group("shape", "It looks like {}.", ("a ball", "a box"), weight=2)


def test_direct_construction_resolves_and_normalises():
    system = System(groups=(COLOUR, SHAPE), rules={"Alpha": {"colour": "red", "shape": 1}, "Beta": {"shape": ["a box", 0], "colour": 2}})
    assert system == System.from_dict({
        "groups": {"colour": {"prompt": "It is {}.", "options": ["red", "blue", "green"]},
                   "shape": {"prompt": "It looks like {}.", "options": ["a ball", "a box"], "weight": 2}},
        "rules": {"Alpha": {"colour": 0, "shape": 1}, "Beta": {"colour": 2, "shape": [0, 1]}},
    })
    assert system.rules["Beta"] == {"colour": (2,), "shape": (0, 1)}
    assert SHAPE.weight == 2.0 and isinstance(SHAPE.weight, float)
    renamed = dataclasses.replace(system, name="renamed")
    assert renamed.name == "renamed" and renamed.fingerprint == system.fingerprint


def test_direct_construction_reports_like_from_dict():
    with pytest.raises(SystemValidationError) as info:
        System(groups=(COLOUR, SHAPE), rules={"Alpha": {"colour": 9, "shape": 0}, "Beta": {"colour": "red"}}, temperature=float("nan"))
    assert info.value.problems == [
        "rules.Alpha.colour: option 9 out of range (group has 3 options)",
        "rules.Beta: missing group 'shape'",
        "temperature: must be a positive finite number, got nan",
    ]
    with pytest.raises(SystemValidationError, match=r"groups\.colour\.prompt: prompt must contain exactly one"):
        Group("colour", "It is red.", ("red",))
    with pytest.raises(SystemValidationError, match=r"groups\.colour\.weight: must be a positive finite number"):
        Group("colour", "It is {}.", ("red",), weight=float("inf"))
    with pytest.raises(SystemValidationError) as info:
        System(groups=(COLOUR, COLOUR, "shape"), rules={"Alpha": {"colour": 0}, "Beta": {"colour": 1}})  # type: ignore[arg-type]
    assert info.value.problems == ["groups.colour: duplicate group name", "groups[2]: expected a Group, got str"]
    with pytest.raises(SystemValidationError, match="rules: a classifier needs at least 2 classes"):
        System(groups=(COLOUR,), rules={"Alpha": {"colour": 0}})


# ------------------------------------------------------------------ edits
@pytest.fixture()
def base() -> System:
    return System.from_dict(mutate(lambda d: d.update(name="base")))


def test_replace_option_keeps_rules_on_the_index(base):
    edited = base.replace_option("colour", "blue", "navy")
    assert edited.groups[0].options == ("red", "navy", "green")
    assert edited.rules == base.rules
    assert edited.compile().prompts[1] == "It is navy."
    np.testing.assert_array_equal(edited.compile().rule_matrix, base.compile().rule_matrix)
    assert edited.replace_option("colour", 1, "blue") == base
    assert base.groups[0].options == ("red", "blue", "green")  # the original is untouched


def test_add_and_remove_option_reindex_rules(base):
    added = base.add_option("colour", "black")
    assert added.groups[0].options[-1] == "black" and added.rules == base.rules
    assert added.compile().rule_matrix[3].tolist() == [0.0, 0.0]
    removed = base.remove_option("colour", "blue")
    assert removed.groups[0].options == ("red", "green")
    assert removed.rules["Beta"]["colour"] == (0, 1)  # red and green, re-indexed
    assert removed.to_dict()["rules"] == base.to_dict()["rules"]
    # Beta also accepts green, so dropping red leaves it green; Alpha had only red.
    with pytest.raises(SystemValidationError) as info:
        base.remove_option("colour", "red")
    assert info.value.problems == ["rules.Alpha.colour: 'red' is the class's only option in this group; give it another option first"]
    assert base.with_rule("Alpha", "colour", ["red", "blue"]).remove_option("colour", 0).rules["Beta"]["colour"] == (1,)


def test_rule_edits(base):
    edited = base.with_rule("Alpha", "colour", ["green", "blue"])
    assert edited.rules["Alpha"]["colour"] == (1, 2) and edited.rules["Beta"] == base.rules["Beta"]
    batch = base.with_rules({"Alpha": {"shape": 0}, "Beta": {"colour": "blue", "shape": [0, 1]}})
    assert batch.rules["Alpha"] == {"colour": (0,), "shape": (0,)}
    assert batch.rules["Beta"] == {"colour": (1,), "shape": (0, 1)}
    assert batch.identical_rules() == []
    assert base.with_rule("Beta", "colour", "red").with_rule("Beta", "shape", 1).identical_rules() == [["Alpha", "Beta"]]
    with pytest.raises(SystemValidationError, match="empty list of options"):
        base.with_rule("Alpha", "colour", [])
    with pytest.raises(SystemValidationError, match="the same option is listed twice"):
        base.with_rule("Alpha", "colour", ["red", 0])


def test_group_edits(base):
    weighted = base.with_group_weights({"shape": 3})
    assert weighted.groups[1].weight == 3.0 and weighted.rules is base.rules
    assert weighted.compile().rule_matrix[4].tolist() == [3.0, 0.0]
    dropped = base.without_group("colour")
    assert dropped.group_names == ("shape",) and dropped.rules["Alpha"] == {"shape": (1,)}
    size = Group("size", "It is {} in size.", ("big", "small"), description="how big")
    added = base.with_group(size, {"Alpha": "big", "Beta": ["small", "big"]}, position=1)
    assert added.group_names == ("colour", "size", "shape")
    assert added.rules["Beta"] == {"colour": (0, 2), "size": (0, 1), "shape": (0,)}
    assert added.without_group("size") == base
    assert added.compile().prompts[3:5] == ("It is big in size.", "It is small in size.")
    assert System.from_dict(added.to_dict()) == added
    with pytest.raises(SystemValidationError, match=r"rules\.Beta: missing group 'size'"):
        base.with_group(size, {"Alpha": "big"})
    with pytest.raises(SystemValidationError, match="already has a group with this name"):
        base.with_group(COLOUR, {"Alpha": 0, "Beta": 0})
    with pytest.raises(SystemValidationError, match="at least one group"):
        dropped.without_group("shape")


def test_scalar_edits(base):
    assert base.with_temperature(20).temperature == 20.0
    assert base.with_temperature(20).with_temperature(None) == base
    assert base.with_baseline_prompt("a photo of {}").compile().baseline_prompts == ("a photo of Alpha", "a photo of Beta")
    for value in (0, -1, float("inf"), float("nan"), "hot", 10**400):
        with pytest.raises(SystemValidationError, match="temperature: must be a"):
            base.with_temperature(value)  # type: ignore[arg-type]
    with pytest.raises(SystemValidationError, match="baseline_prompt: prompt must contain exactly one"):
        base.with_baseline_prompt("a photo")
    with pytest.raises(SystemValidationError, match=r"groups\.shape\.weight"):
        base.with_group_weights({"shape": 1e400})


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda s: s.replace_option("size", 0, "x"), "unknown group 'size'"),
        (lambda s: s.replace_option("colour", "purple", "x"), "unknown option 'purple'"),
        (lambda s: s.remove_option("colour", 7), "unknown option 7"),
        (lambda s: s.add_option("size", "x"), "unknown group 'size'"),
        (lambda s: s.with_rule("Gamma", "colour", 0), "unknown class 'Gamma'"),
        (lambda s: s.with_rule("Alpha", "size", 0), "unknown group 'size'"),
        (lambda s: s.with_rule("Alpha", "colour", "purple"), "rules.Alpha.colour: unknown option 'purple'"),
        (lambda s: s.with_rules({"Alpha": {"colour": 0}, "Gamma": {"colour": 0}}), "unknown class 'Gamma'"),
        (lambda s: s.with_group_weights({"size": 2}), "unknown group 'size'"),
        (lambda s: s.without_group("size"), "unknown group 'size'"),
        (lambda s: s.with_group(Group("size", "{}", ("big",)), {"Alpha": 0, "Beta": 0, "Gamma": 0}), "unknown class 'Gamma'"),
        (lambda s: s.with_group(Group("size", "{}", ("big",)), {"Alpha": 0, "Beta": 3}), "unknown option 3"),
    ],
)
def test_edits_on_unknown_names_are_input_errors(base, edit, named):
    with pytest.raises(InputError, match=re.escape(named)) as info:
        edit(base)
    assert "'base'" in str(info.value) or "group" in str(info.value)
    assert info.value.exit_code == 2


def test_replace_and_add_option_are_validated(base):
    with pytest.raises(SystemValidationError) as info:
        base.replace_option("colour", "blue", "red")
    assert info.value.problems == ["groups.colour.options[1]: duplicate option 'red' (same as options[0])"]
    assert "'base' after replace_option" in str(info.value)
    with pytest.raises(SystemValidationError, match=r"groups\.colour\.options\[3\]: option must be a non-empty string"):
        base.add_option("colour", " ")


# ------------------------------------------------------- real-world input
def test_binary_file_is_not_utf8(tmp_path):
    path = tmp_path / "photo.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(SystemValidationError) as info:
        System.load(path)
    assert str(path) in str(info.value) and info.value.exit_code == 2
    assert info.value.problems[0].startswith("not UTF-8 text: byte 0x89 at offset 0 (line 1)")
    ascii_binary = tmp_path / "model.json"
    ascii_binary.write_bytes(b"{\n\x00\x01\x02}")
    with pytest.raises(SystemValidationError, match=r"not UTF-8 text: NUL byte at offset 2 \(line 2\)"):
        System.load(ascii_binary)
    late = tmp_path / "late.json"
    late.write_bytes(b'{"name": "ok",\n "x": "caf\xe9"}')  # Latin-1, not UTF-8
    with pytest.raises(SystemValidationError, match=r"byte 0xe9 at offset 25 \(line 2\)"):
        System.load(late)


def test_bad_byte_offsets_across_decoding_chunks():
    step = 1 << 20  # the reader decodes in 1 MiB chunks: "é" is cut in two by the first boundary
    text = b"#" * (step - 1) + "é".encode() + b"\n#"
    system_parse.check_utf8(text, "big.yaml")
    with pytest.raises(SystemValidationError, match=rf"byte 0xff at offset {step + 3} \(line 2\)"):
        system_parse.check_utf8(text + b"\xff", "big.yaml")


def test_byte_order_mark_is_accepted(tmp_path):
    for suffix, text in ((".json", json.dumps(BASE)), (".yaml", yaml.safe_dump(BASE))):
        path = tmp_path / f"bom{suffix}"
        path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
        assert System.load(path) == System.from_dict(BASE)


def test_group_problems_do_not_hide_rule_problems():
    def change(d):
        d["classification_cot"]["colour"]["prompt"] = "no placeholder"
        d["pokemon_rules"]["Alpha"]["shape"] = "a cone"
        d["pokemon_rules"]["Beta"]["colour"] = "purple"  # not checked: colour itself is broken

    problems = problems_of(mutate(change))
    assert problems == [
        "groups.colour.prompt: prompt must contain exactly one '{}' (found 0): 'no placeholder'",
        "rules.Alpha.shape: option 'a cone' is not one of the group's options",
        "rules.*.colour: not checked because groups.colour is invalid",
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"groups": {"c": {"prompt": "{}", "options": ["a", "b"], "weight": 1e400}}, "rules": {"A": {"c": 0}, "B": {"c": 1}}}',
         "groups.c.weight: must be a positive finite number, got inf"),
        ('{"groups": {"c": {"prompt": "{}", "options": ["a", "b"]}}, "rules": {"A": {"c": 0}, "B": {"c": 1}}, "temperature": 1e400}',
         "temperature: must be a positive finite number, got inf"),
        ('{"groups": {"c": {"prompt": "{}", "options": ["a", "b"]}}, "rules": {"A": {"c": 0}, "B": {"c": 1}}, "temperature": 1' + "0" * 400 + "}",
         "temperature: must be a positive finite number, got 1000"),
        ("groups: {c: {prompt: '{}', options: [a, b], weight: .nan}}\nrules: {A: {c: 0}, B: {c: 1}}",
         "groups.c.weight: must be a positive finite number, got nan"),
        ("groups: {c: {prompt: '{}', options: [a, b]}}\nrules: {A: {c: 0}, B: {c: 1}}\ntemperature: -.inf",
         "temperature: must be a positive finite number, got -inf"),
        ("groups: {c: {prompt: '{}', options: [a, b], weight: 1.0e+31}}\nrules: {A: {c: 0}, B: {c: 1}}",
         "groups.c.weight: must be between 1e-30 and 1e+30 (scores are float32), got 1e+31"),
        ("groups: {c: {prompt: '{}', options: [a, b]}}\nrules: {A: {c: 0}, B: {c: 1}}\ntemperature: 1.0e-40",
         "temperature: must be between 1e-30 and 1e+30 (scores are float32), got 1e-40"),
        ("groups: {c: {prompt: '{}', options: [a, b]}}\nrules: {A: {c: 0}}", "rules: a classifier needs at least 2 classes (found 1)"),
        ("groups: {c: {prompt: '{}', options: [a, b]}}\nrules:", "rules: must be a mapping of class name"),
        ("groups:\nrules: {A: {c: 0}, B: {c: 1}}", "groups: must be a non-empty mapping"),
    ],
)
def test_numbers_and_sections_from_files(tmp_path, text, expected):
    path = tmp_path / ("s.json" if text.startswith("{") else "s.yaml")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SystemValidationError) as info:
        System.load(path)
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems


# --------------------------------------------------------------- YAML reading
YAML_FEATURES = """\
groups:
  colour: {prompt: "It is {}.", options: [red, blue, green]}
  shape:
    prompt: 'It looks like {}.'
    options:
      - a ball
      - a box
    description: |
      two
      lines
rules:
  Alpha: &alpha {colour: 0, shape: "a box"}
  Beta:
    <<: *alpha
    colour: [red, 2]
    shape: a ball
"""


@pytest.fixture(params=["libyaml", "python"])
def yaml_parser(request, monkeypatch):
    """Run a test with libyaml's event parser and with PyYAML's pure-Python one."""
    if request.param == "python":
        monkeypatch.setattr(system_parse, "_YAML_PARSER", system_parse._PyParser)
    elif system_parse._CParser is None:
        pytest.skip("libyaml is not installed")
    return request.param


@pytest.mark.parametrize(
    "text",
    [
        YAML_FEATURES,
        "a: 1\nb: [1, 2.5, .inf, ~, null, yes, No, '1', \"x\\ty\", 0x1F, 0o17, 1_000, 2001-12-14]\nc: !!str 12\nd: ! 12\n",
        "x: &a [1, {k: v}]\ny: *a\nz: >-\n  folded\n  text\n",
        "",
        "# only a comment\n",
        "- just\n- a list\n",
        "plain scalar\n",
        "? [a, b]\n: c\n",
        "---\nk: v\n...\n",
    ],
)
def test_yaml_reader_matches_pyyaml(yaml_parser, text):
    try:
        expected = yaml.safe_load(text)
    except yaml.YAMLError:
        with pytest.raises(SystemValidationError):
            parse_system_text(text, "t.yaml")
        return
    assert parse_system_text(text, "t.yaml") == expected
    assert parse_system_text(text.encode("utf-8"), "t.yaml") == expected


def test_yaml_features_load_as_a_system(yaml_parser, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(YAML_FEATURES, encoding="utf-8")
    system = System.load(path)
    assert system.rules["Beta"] == {"colour": (0, 2), "shape": (0,)}
    assert system.groups[1].description == "two\nlines\n"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("a: 1\nb: 2\na: 3\n", "line 3: duplicate key 'a'"),
        ("base: &b {x: 1}\nr:\n  <<: *b\n  y: 2\n  y: 3\n", "line 5: duplicate key 'y'"),  # merge keys: the node path
        ("a: *nowhere\n", "line 1, column 4: malformed YAML:"),
        ("a: 2024-13-45\n", "line 1, column 4: malformed YAML: cannot read '2024-13-45' as timestamp"),
        ("a: !!int nope\n", "line 1, column 4: malformed YAML:"),
        ("a: 1\n---\nb: 2\n", "line 2, column 1: malformed YAML: but found another document"),
        ("a: [1, 2\nb: 3\n", "line 2, column 2: malformed YAML"),
        ("a: 'bell\x07'\n", "line 1: malformed YAML"),
    ],
)
def test_yaml_problems_name_their_line(yaml_parser, text, problem):
    with pytest.raises(SystemValidationError) as info:
        parse_system_text(text, "t.yaml")
    assert info.value.problems[0].startswith(problem), info.value.problems


def test_json_duplicates_are_found_in_one_pass():
    with pytest.raises(SystemValidationError) as info:
        parse_system_text('{"a": 1, "b": {"x": 1, "x": 2, "y": 0, "y": 1}, "a": 2}', "t.json", json_format=True)
    assert info.value.problems == ["duplicate key 'x'", "duplicate key 'y'", "duplicate key 'a'"]


# -------------------------------------------------------- ensemble templates
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]


def test_templates_round_trip_and_reach_the_compiled_system(tmp_path):
    system = System.from_dict(mutate(lambda d: d.update(templates=TEMPLATES)))
    assert system.templates == tuple(TEMPLATES) and system.compile().templates == tuple(TEMPLATES)
    assert system.to_dict()["templates"] == TEMPLATES and system.summary()["templates"] == TEMPLATES
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"s{suffix}"
        system.save(path)
        again = System.load(path)
        assert again == system and again.templates == tuple(TEMPLATES) and again.fingerprint == system.fingerprint
    plain = System.from_dict(BASE)
    assert plain.templates == () and plain.compile().templates == () and "templates" not in plain.to_dict()
    assert System.from_dict(mutate(lambda d: d.update(templates=None))) == plain  # null: the method's defaults
    assert pickle.loads(pickle.dumps(system)) == system
    direct = System(groups=(COLOUR, SHAPE), rules={"Alpha": {"colour": 0, "shape": 1}, "Beta": {"colour": 2, "shape": 0}},
                    templates=TEMPLATES)  # type: ignore[arg-type]
    assert direct.templates == tuple(TEMPLATES)


@pytest.mark.parametrize(
    "templates, expected",
    [
        ("a photo of a {}.", ["templates: must be a list of prompt templates with one '{}' each, got 'a photo of a {}.'"]),
        ({"a": "{}"}, ["templates: must be a list of prompt templates with one '{}' each, got {'a': '{}'}"]),
        ([], ["templates: empty list; leave the field out (or set None) to use the ensemble method's defaults"]),
        (["a photo of a {}.", "a photo", "{} and {}", 3],
         ["templates[1]: prompt must contain exactly one '{}' (found 0): 'a photo'",
          "templates[2]: prompt must contain exactly one '{}' (found 2): '{} and {}'",
          "templates[3]: must be a string with one '{}', got 3"]),
        (["a {}", "b {}", "a {}"], ["templates[2]: duplicate template 'a {}' (same as templates[0])"]),
    ],
)
def test_bad_templates_name_their_path(templates, expected):
    assert problems_of(mutate(lambda d: d.update(templates=templates))) == expected
    with pytest.raises(SystemValidationError) as info:
        System.from_dict(BASE).with_templates(templates)
    assert info.value.problems == expected and "after with_templates" in str(info.value)


def test_templates_change_the_fingerprint_and_equality():
    base = System.from_dict(BASE)
    with_templates = base.with_templates(TEMPLATES)
    others = [with_templates, base.with_templates(TEMPLATES[:1]), base.with_templates(TEMPLATES[::-1])]
    prints = {s.fingerprint for s in others}
    assert base.fingerprint not in prints and len(prints) == len(others)
    assert with_templates != base and with_templates == System.from_dict(mutate(lambda d: d.update(templates=TEMPLATES)))
    cleared = with_templates.with_templates(None)
    assert cleared == base and cleared.fingerprint == base.fingerprint and cleared.templates == ()


def test_templates_survive_edits(base):
    system = base.with_templates(TEMPLATES)
    size = Group("size", "It is {} in size.", ("big", "small"))
    edits = [
        lambda s: s.replace_option("colour", "blue", "navy"),
        lambda s: s.add_option("colour", "black"),
        lambda s: s.with_rule("Alpha", "colour", ["red", "blue"]),
        lambda s: s.with_group_weights({"shape": 2}),
        lambda s: s.with_temperature(9),
        lambda s: s.with_baseline_prompt("a photo of {}"),
        lambda s: s.without_group("colour"),
        lambda s: s.with_group(size, {"Alpha": "big", "Beta": "small"}),
        lambda s: dataclasses.replace(s, name="renamed"),
    ]
    for edit in edits:
        edited = edit(system)
        assert edited.templates == tuple(TEMPLATES) and edited.compile().templates == tuple(TEMPLATES)
        assert edited.fingerprint != edit(base).fingerprint
