"""One exception tree: every error cotembed raises lives in ``cotembed.errors``, its docstring
draws the whole tree, and the CLI's exit codes and the service's HTTP statuses come from it."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import cotembed
import cotembed.errors as errors
from cotembed.cli._main import main

SRC = Path(cotembed.__file__).resolve().parent


def _classes() -> list[type[BaseException]]:
    return [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, BaseException) and c.__module__ == errors.__name__]


def _exception_bases(node: ast.ClassDef) -> list[str]:
    names = [b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else "" for b in node.bases]
    return [n for n in names if n.endswith(("Error", "Exception")) or n in {name for name, _ in inspect.getmembers(errors, inspect.isclass)}]


def test_no_public_exception_is_defined_outside_errors_py():
    """Private control-flow signals (``_Rejected``) may stay where they are raised and caught; nothing else."""
    stray = []
    for path in SRC.rglob("*.py"):
        if path.name == "errors.py" and path.parent == SRC:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and _exception_bases(node) and not node.name.startswith("_"):
                stray.append(f"{path.relative_to(SRC)}: {node.name}")
    assert stray == []


def _drawn_tree() -> list[tuple[int, str]]:
    """(column, class name) of each line of the docstring's drawing, top to bottom."""
    out = []
    for line in (errors.__doc__ or "").splitlines():
        if "──" in line or line.split()[:1] == ["CotembedError"]:
            name = re.search(r"[A-Z]\w+", line)
            assert name is not None, line
            out.append((name.start(), name.group(0)))
    return out


def test_the_docstring_draws_every_class_under_its_parent():
    tree = _drawn_tree()
    assert sorted(name for _, name in tree) == sorted(c.__name__ for c in _classes())
    for i, (column, name) in enumerate(tree[1:], start=1):
        parent = next(p for c, p in reversed(tree[:i]) if c < column)
        assert getattr(errors, parent) in getattr(errors, name).__mro__[1:], f"{name} is drawn under {parent}"


def test_every_class_is_a_cotembed_error_with_an_exit_code_and_an_http_status():
    for cls in _classes():
        assert issubclass(cls, errors.CotembedError), cls
        assert cls.exit_code in (1, 2) and 400 <= cls.http_status < 600, cls
    assert errors.InputError.exit_code == 2 and errors.InputError.http_status == 422
    assert errors.CotembedError.exit_code == 1 and errors.CotembedError.http_status == 500
    assert issubclass(errors.DraftParseError, errors.CotembedError)  # it once stood outside the tree


@pytest.mark.parametrize(("exc", "code", "status"), [
    (errors.UnknownLabelError("x"), 2, 422),
    (errors.QueueFull(3, 2, 4), 1, 429),
    (errors.BatcherClosed("closing"), 1, 503),
    (errors.FetchRefused("private address"), 2, 422),
    (errors.ApiError(404, "no model 'x'"), 2, 404),
    (errors.ApiError(503, "not ready"), 1, 503),
    (errors.LLMUnavailable("down", attempts=3, status=None), 1, 500),
    (KeyboardInterrupt(), 130, 500),
    (RuntimeError("a defect"), 1, 500),
])
def test_exit_code_and_http_status_of_any_exception(exc, code, status):
    assert errors.exit_code_of(exc) == code
    assert errors.http_status_of(exc) == status


def test_old_import_locations_that_users_know_still_work():
    from cotembed.authoring._llm import LLMError
    from cotembed.testing import EncoderCheckError, MethodCheckError

    assert LLMError is errors.LLMError and EncoderCheckError is errors.EncoderCheckError and MethodCheckError is errors.MethodCheckError
    assert issubclass(MethodCheckError, AssertionError)  # pytest still reports a failed contract as a failed assertion


def test_the_cli_exits_with_the_class_exit_code(capsys):
    code = main(["validate", str(SRC / "no-such-system.yaml"), "--format", "json"])
    out = capsys.readouterr().out
    assert code == 2 and '"exit_code": 2' in out
