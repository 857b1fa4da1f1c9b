"""critters is a guest of the core: it may import the core, but never the encoders, which
import it (the bundled ``critters`` model loads its tower from ``cotembed.critters.model``).
An import in either direction closes a cycle; this walks the source, so an import inside
a function or under ``TYPE_CHECKING`` counts as much as one at the top of a module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cotembed.critters

CRITTERS = Path(cotembed.critters.__file__).resolve().parent
FORBIDDEN = "cotembed.encoders"


def _module_name(path: Path) -> str:
    parts = path.relative_to(CRITTERS.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, relative ones resolved,
    ``from a import b`` counted as both ``a`` and ``a.b``, and string arguments of
    ``importlib.import_module`` / ``__import__`` included."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def _imports_encoders(name: str) -> bool:
    return name == FORBIDDEN or name.startswith(FORBIDDEN + ".")


SOURCES = sorted(CRITTERS.rglob("*.py"))


def test_the_walk_sees_every_critters_module():
    names = {_module_name(p) for p in SOURCES}
    assert {"cotembed.critters", "cotembed.critters.train", "cotembed.critters.render", "cotembed.critters.drawing.pen"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(CRITTERS).as_posix())
def test_no_critters_module_imports_the_encoders(path):
    hits = [f"{path}:{line}: imports {name}"
            for line, name in imported_modules(path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py")
            if _imports_encoders(name)]
    assert hits == [], "critters must not import cotembed.encoders (the encoders import critters):\n" + "\n".join(hits)


@pytest.mark.parametrize(
    "source",
    [
        "from cotembed.encoders.st import bundled_minilm",
        "def f():\n    import cotembed.encoders\n",
        "from cotembed import encoders",
        "from ..encoders import load_encoder",
        "import importlib\nimportlib.import_module('cotembed.encoders.st')",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cotembed.encoders.base import Encoder\n",
    ],
)
def test_the_check_catches_every_way_of_importing_the_encoders(source):
    assert any(_imports_encoders(name) for _, name in imported_modules(source, "cotembed.critters.train"))


def test_the_check_lets_the_core_through():
    source = "from cotembed.cache import text_key\nfrom cotembed.errors import InputError\nfrom . import world\n"
    assert not any(_imports_encoders(name) for _, name in imported_modules(source, "cotembed.critters.train"))
