"""Hostile system files: YAML alias bombs are refused fast, and error messages never echo a huge value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cotembed.errors import SystemValidationError
from cotembed.system import System, parse_system_text

SRC = str(Path(__import__("cotembed").__file__).resolve().parent.parent)


def billion_laughs(levels: int = 9, width: int = 10, where: str = "options") -> str:
    """Nested anchors each aliasing the previous one ``width`` times: width**levels values in a few hundred bytes."""
    lines = ["x:", '  l0: &l0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    if where == "options":
        lines.append(f'groups: {{g: {{prompt: "a {{}}", options: *l{levels}}}}}')
    else:
        lines.append('groups: {g: {prompt: "a {}", options: [lol]}}')
    lines.append(f"rules: {{A: {{g: 0}}, B: {{g: *l{levels}}}}}")
    return "\n".join(lines) + "\n"


# The child caps its own address space, so a loader that expands the aliases fails
# with MemoryError (or the timeout) instead of taking the machine down.
CHILD = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))
sys.path.insert(0, sys.argv[1])
from cotembed.errors import SystemValidationError
from cotembed.system import System
t0 = time.perf_counter()
try:
    System.load(sys.argv[2])
except SystemValidationError as exc:
    print(len(str(exc)), time.perf_counter() - t0)
    print(str(exc))
"""


@pytest.mark.parametrize("where", ["options", "rules"])
def test_alias_bomb_is_refused_quickly_with_a_short_message(tmp_path, where):
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs(where=where), encoding="utf-8")
    assert path.stat().st_size < 700
    done = subprocess.run([sys.executable, "-c", CHILD, SRC, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    size, seconds = done.stdout.split("\n", 1)[0].split()
    assert int(size) < 1_000 and float(seconds) < 2.0
    assert str(path) in done.stdout and "aliases expanded too much" in done.stdout


def test_alias_bomb_is_refused_by_the_composer_path_too():
    # A merge key (<<) sends the file to PyYAML's node-based loader instead of the streaming reader.
    text = "base: &base {k: v}\nm:\n  <<: *base\n" + billion_laughs(levels=7)
    with pytest.raises(SystemValidationError) as info:
        parse_system_text(text, "merged.yaml")
    assert "aliases expanded too much" in str(info.value) and len(str(info.value)) < 1_000


@pytest.mark.parametrize("text", ["a: &a [1, *a]\n", "base: &b {k: v}\nm: {<<: *b}\na: &a [1, *a]\n"])
def test_a_recursive_alias_is_refused(text):
    with pytest.raises(SystemValidationError, match="holds it"):
        parse_system_text(text, "loop.yaml")


def test_shared_anchors_within_the_budget_still_load():
    colours = ", ".join(f"c{i}" for i in range(50))
    rules = "\n".join(f"  K{i}: {{colour: c{i % 50}, shade: *all}}" for i in range(200))
    text = (f"groups:\n  colour: {{prompt: 'a {{}} thing', options: &all [{colours}]}}\n"
            f"  shade: {{prompt: 'a {{}} shade', options: *all}}\nrules:\n{rules}\n")
    system = System.from_dict(parse_system_text(text, "shared.yaml"), "shared.yaml")
    assert system.rules["K3"]["shade"] == tuple(range(50))


def test_a_huge_value_is_quoted_short_in_errors():
    prompt = "x" * 5_000_000  # no '{}': invalid
    with pytest.raises(SystemValidationError) as info:
        System.from_dict({"groups": {"g": {"prompt": prompt, "options": ["a"]}}, "rules": {"A": {"g": 0}, "B": {"g": 0}}})
    message = str(info.value)
    assert len(message) < 1_000
    assert "5,000,000 characters" in message and "..." in message


def test_a_huge_collection_is_quoted_short_in_errors():
    with pytest.raises(SystemValidationError) as info:
        System.from_dict({"groups": {"g": {"prompt": "a {}", "options": ["a"]}}, "rules": {"A": {"g": 0}, "B": {"g": 0}},
                          "name": [list(range(1000))] * 1000})
    assert len(str(info.value)) < 1_000 and "name: must be a string" in str(info.value)


def test_a_huge_class_name_is_cut_in_errors():
    name = "K" * 1_000_000
    with pytest.raises(SystemValidationError) as info:
        System.from_dict({"groups": {"g": {"prompt": "a {}", "options": ["a"]}}, "rules": {name: {"g": "b"}, "B": {"g": 0}}})
    assert len(str(info.value)) < 2_000 and "rules.KKK" in str(info.value)
