"""Properties of systems over random valid ones: round trips, fingerprints, edits, the YAML reader."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import cotembed.system._parse as system_parse
from cotembed.errors import SystemValidationError
from cotembed.system import Group, System, parse_system_text

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any text but lone surrogates (not encodable as UTF-8, so not in any file): control
# characters, quotes, colons, YAML words ("null", "yes", "<<"), numbers as text.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
YAMLISH = st.sampled_from(["null", "yes", "No", "~", "1", "0x1F", "1.5", "<<", "- a", "a: b", "#x", "'q'", "{}x", " pad "])
NAME = st.one_of(TEXT, YAMLISH).filter(lambda s: s.strip() != "")
PROMPT = st.tuples(TEXT, TEXT).map(lambda parts: parts[0] + "{}" + parts[1]).filter(lambda p: p.count("{}") == 1)
POSITIVE = st.floats(min_value=1e-30, max_value=1e30)


@st.composite
def system_dicts(draw: st.DrawFn) -> dict:
    """A valid system dict: 1-4 groups of 2-5 options, 2-6 classes, every optional field sometimes."""
    groups = {}
    for gname in draw(st.lists(NAME, min_size=1, max_size=4, unique=True)):
        spec: dict = {"prompt": draw(PROMPT), "options": draw(st.lists(NAME, min_size=2, max_size=5, unique=True))}
        if draw(st.booleans()):
            spec["weight"] = draw(POSITIVE)
        if draw(st.booleans()):
            spec["description"] = draw(TEXT)
        groups[gname] = spec
    classes = draw(st.lists(NAME, min_size=2, max_size=6, unique_by=lambda s: s.casefold().strip()))
    rules = {}
    for cls_name in classes:
        rule = {}
        for gname, spec in groups.items():
            options = spec["options"]
            chosen = draw(st.lists(st.integers(0, len(options) - 1), min_size=1, max_size=len(options), unique=True))
            refs = [draw(st.sampled_from([i, options[i]])) for i in chosen]  # by index or by text
            rule[gname] = refs[0] if len(refs) == 1 and draw(st.booleans()) else refs
        rules[cls_name] = rule
    data: dict = {"groups": groups, "rules": rules}
    if draw(st.booleans()):
        data["name"] = draw(TEXT)
    if draw(st.booleans()):
        data["description"] = draw(TEXT)
    if draw(st.booleans()):
        data["temperature"] = draw(POSITIVE)
    if draw(st.booleans()):
        data["baseline_prompt"] = draw(PROMPT)
    if draw(st.booleans()):
        data["aliases"] = {c: draw(st.lists(NAME, min_size=1, max_size=2)) for c in draw(st.lists(st.sampled_from(classes), unique=True))}
    return data


systems = system_dicts().map(System.from_dict)


@FAST
@given(systems)
def test_dict_roundtrip_is_identity(system):
    again = System.from_dict(system.to_dict())
    assert again == system
    assert again.fingerprint == system.fingerprint and hash(again) == hash(system)
    assert again.to_dict() == system.to_dict()


@FAST
@given(system=systems, suffix=st.sampled_from([".yaml", ".yml", ".json"]))
def test_file_roundtrip_is_identity(tmp_path_factory, system, suffix):
    path = tmp_path_factory.getbasetemp() / f"roundtrip{suffix}"
    system.save(path)
    again = System.load(path)
    assert again == system and again.fingerprint == system.fingerprint


@FAST
@given(system=systems, data=st.data())
def test_fingerprint_tracks_scoring_content_only(system, data):
    renamed = dataclasses.replace(system, name=data.draw(TEXT), description=data.draw(TEXT), aliases={})
    assert renamed.fingerprint == system.fingerprint and hash(renamed) == hash(system)

    gi = data.draw(st.integers(0, len(system.groups) - 1))
    group = system.groups[gi]
    new_text = data.draw(NAME.filter(lambda t: t not in group.options))
    assert system.replace_option(group.name, data.draw(st.integers(0, len(group.options) - 1)), new_text).fingerprint != system.fingerprint

    weight = data.draw(POSITIVE.filter(lambda w: w != group.weight))
    assert system.with_group_weights({group.name: weight}).fingerprint != system.fingerprint

    cls_name = data.draw(st.sampled_from(system.class_names))
    current = system.rules[cls_name][group.name]
    other = data.draw(st.lists(st.integers(0, len(group.options) - 1), min_size=1, unique=True).filter(lambda o: tuple(sorted(o)) != current))
    assert system.with_rule(cls_name, group.name, other).fingerprint != system.fingerprint


def block(compiled, gi: int) -> slice:
    return slice(int(compiled.offsets[gi]), int(compiled.offsets[gi + 1]))


def assert_valid(system: System) -> None:
    """An edit's result passes the full validator unchanged."""
    assert System.from_dict(system.to_dict()) == system


@FAST
@given(system=systems, data=st.data())
def test_rule_edits_change_exactly_their_column(system, data):
    gi = data.draw(st.integers(0, len(system.groups) - 1))
    group = system.groups[gi]
    n = data.draw(st.integers(0, len(system.class_names) - 1))
    chosen = data.draw(st.lists(st.integers(0, len(group.options) - 1), min_size=1, unique=True))
    refs = [data.draw(st.sampled_from([i, group.options[i]])) for i in chosen]
    edited = system.with_rule(system.class_names[n], group.name, refs)
    assert_valid(edited)
    expected = system.compile().rule_matrix.copy()
    rows = block(system.compile(), gi)
    expected[rows, n] = 0
    expected[rows.start + np.asarray(chosen), n] = group.weight
    np.testing.assert_array_equal(edited.compile().rule_matrix, expected)


@FAST
@given(system=systems, data=st.data())
def test_option_edits_move_matrix_rows(system, data):
    compiled = system.compile()
    gi = data.draw(st.integers(0, len(system.groups) - 1))
    group = system.groups[gi]
    rows = block(compiled, gi)
    i = data.draw(st.integers(0, len(group.options) - 1))

    new_text = data.draw(NAME.filter(lambda t: t not in group.options))
    replaced = system.replace_option(group.name, data.draw(st.sampled_from([i, group.options[i]])), new_text)
    assert_valid(replaced)
    np.testing.assert_array_equal(replaced.compile().rule_matrix, compiled.rule_matrix)
    assert replaced.compile().prompts[rows.start + i] == group.prompt.replace("{}", new_text, 1)

    added = system.add_option(group.name, new_text)
    assert_valid(added)
    np.testing.assert_array_equal(added.compile().rule_matrix, np.insert(compiled.rule_matrix, rows.stop, 0, axis=0))

    only_option = (compiled.rule_matrix[rows].astype(bool).sum(axis=0) == 1) & (compiled.rule_matrix[rows.start + i] > 0)
    if only_option.any():
        with pytest.raises(SystemValidationError) as info:
            system.remove_option(group.name, i)
        assert len(info.value.problems) == int(only_option.sum())
        assert all(p.startswith(f"rules.{system.class_names[n]}.{group.name}:") for p, n in zip(info.value.problems, np.flatnonzero(only_option)))
    else:
        removed = system.remove_option(group.name, i)
        assert_valid(removed)
        np.testing.assert_array_equal(removed.compile().rule_matrix, np.delete(compiled.rule_matrix, rows.start + i, axis=0))


@FAST
@given(system=systems, data=st.data())
def test_group_edits_move_matrix_blocks(system, data):
    compiled = system.compile()
    gi = data.draw(st.integers(0, len(system.groups) - 1))
    group = system.groups[gi]
    rows = block(compiled, gi)

    weight = data.draw(POSITIVE.filter(lambda w: math.isfinite(w / group.weight)))
    weighted = system.with_group_weights({group.name: weight})
    assert_valid(weighted)
    expected = compiled.rule_matrix.copy()
    expected[rows] = (compiled.rule_matrix[rows] > 0) * np.float32(weight)
    np.testing.assert_array_equal(weighted.compile().rule_matrix, expected)

    if len(system.groups) > 1:
        dropped = system.without_group(group.name)
        assert_valid(dropped)
        np.testing.assert_array_equal(dropped.compile().rule_matrix, np.delete(compiled.rule_matrix, np.arange(rows.start, rows.stop), axis=0))

    new_name = data.draw(NAME.filter(lambda t: t not in system.group_names))
    options = data.draw(st.lists(NAME, min_size=2, max_size=4, unique=True))
    new_group = Group(new_name, data.draw(PROMPT), tuple(options), weight=data.draw(POSITIVE))
    choices = {c: data.draw(st.lists(st.integers(0, len(options) - 1), min_size=1, unique=True)) for c in system.class_names}
    at = data.draw(st.integers(0, len(system.groups)))
    added = system.with_group(new_group, choices, position=at)
    assert_valid(added)
    assert added.group_names[at] == new_name
    new_block = np.zeros((len(options), len(system.class_names)), dtype=np.float32)
    for n, c in enumerate(system.class_names):
        new_block[choices[c], n] = new_group.weight
    expected = np.insert(compiled.rule_matrix, int(compiled.offsets[at]), new_block, axis=0)
    np.testing.assert_array_equal(added.compile().rule_matrix, expected)
    assert added.without_group(new_name) == system


# ------------------------------------------------------------------ YAML reader
KEYS = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=False), TEXT, YAMLISH)
VALUES = st.recursive(KEYS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4), max_leaves=20)


@pytest.mark.parametrize("parser", ["libyaml", "python"])
@FAST
@given(value=VALUES, flow=st.sampled_from([None, True, False]), style=st.sampled_from([None, '"', "'"]), unicode=st.booleans())
def test_yaml_reader_reads_what_pyyaml_reads(parser, value, flow, style, unicode):
    if parser == "libyaml" and system_parse._CParser is None:
        pytest.skip("libyaml is not installed")
    text = yaml.safe_dump(value, default_flow_style=flow, default_style=style, allow_unicode=unicode)
    expected = yaml.safe_load(text)
    assume(expected == expected)  # a NaN anywhere compares unequal to itself
    with pytest.MonkeyPatch.context() as patch:
        if parser == "python":
            patch.setattr(system_parse, "_YAML_PARSER", system_parse._PyParser)
        assert parse_system_text(text, "t.yaml") == expected
