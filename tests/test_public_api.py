"""The public face: what ``cotembed`` exports resolves, its entry points document every
parameter, and the runnable examples in their docstrings still give what they show."""

from __future__ import annotations

import doctest
import inspect
import re
from typing import Any

import pytest

import cotembed
from cotembed import CoTClassifier, Scorer, System, evaluate, get_method, load_encoder

ENTRY_POINTS: list[Any] = [
    CoTClassifier, load_encoder, Scorer, Scorer.build, evaluate, get_method,
    System, System.load, System.from_dict, System.save,
    System.replace_option, System.add_option, System.remove_option, System.with_rule, System.with_rules,
    System.with_group_weights, System.with_temperature, System.with_baseline_prompt, System.with_templates,
    System.without_group, System.with_group,
]


def test_every_exported_name_resolves() -> None:
    missing = [name for name in cotembed.__all__ if not hasattr(cotembed, name)]
    assert missing == []
    assert len(set(cotembed.__all__)) == len(cotembed.__all__)


def _documented(doc: str) -> set[str]:
    """Names in the numpy-style ``Parameters`` section (``name : type`` lines, ``**options``)."""
    section = doc.split("Parameters\n", 1)[1]
    section = re.split(r"\n\s*(?:Returns|Raises|Examples)\n", section)[0]
    return {m.group(1) for m in re.finditer(r"^\s*\**(\w+)(?: :|$)", section, re.MULTILINE)}


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda e: e.__qualname__)
def test_entry_point_documents_every_parameter(entry: Any) -> None:
    doc = inspect.getdoc(entry) or ""
    assert "Parameters\n----------" in doc, f"{entry.__qualname__} has no Parameters section"
    target = entry.__init__ if inspect.isclass(entry) else entry
    if entry is System:  # a dataclass: its fields are its parameters
        names = {f for f in inspect.signature(entry).parameters}
    else:
        names = {p for p in inspect.signature(target).parameters if p not in ("self", "cls")}
    assert names - _documented(doc) == set()


@pytest.mark.parametrize("entry", [Scorer, get_method, System, evaluate], ids=lambda e: e.__qualname__)
def test_docstring_examples_run(entry: Any) -> None:
    module = inspect.getmodule(entry)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
