"""Checks on few-shot support sets: unknown labels, classes without examples, leakage, model keys."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from cotembed._support import (
    LeakageWarning,
    check_same_model,
    check_support_labels,
    classes_without_examples,
    find_duplicates,
    warn_duplicates,
)
from cotembed.data import Sample, text_samples
from cotembed.errors import InputError, UnknownLabelError

CLASSES = ("cat", "dog", "owl")


def resolve(label: str) -> str | None:
    return {"kitten": "cat"}.get(label, label if label in CLASSES else None)


def test_unknown_labels_are_listed_or_skipped():
    samples = text_samples(["a", "b", "c", "d"], ["cat", "lion", "kitten", "tiger"])
    with pytest.raises(UnknownLabelError, match="2 label\\(s\\).*'lion' \\(first at text\\[1\\]\\).*'tiger'.*--ignore-unknown"):
        check_support_labels(samples, resolve)
    kept, skipped = check_support_labels(samples, resolve, ignore_unknown=True)
    assert [s.label for s in kept] == ["cat", "cat"]
    assert [s.source for s in skipped] == ["text[1]", "text[3]"]


def test_examples_without_a_label_are_refused():
    with pytest.raises(InputError, match="examples: 1 example\\(s\\) have no label: text\\[1\\]"):
        check_support_labels(text_samples(["a", "b"], ["cat", None]), resolve)


def test_classes_without_examples_are_listed_and_refused_when_required():
    assert classes_without_examples(["cat", "cat", "owl"], CLASSES) == ["dog"]
    with pytest.raises(InputError, match="1 class\\(es\\) have no example: dog"):
        classes_without_examples(["cat", "owl"], CLASSES, require_all=True)
    with pytest.raises(InputError, match="no example belongs to a class"):
        classes_without_examples([], CLASSES)


def test_duplicate_content_between_support_and_inputs_is_found_and_warned(tmp_path: Path):
    (tmp_path / "a.png").write_bytes(b"same bytes")
    (tmp_path / "b.png").write_bytes(b"same bytes")
    (tmp_path / "c.png").write_bytes(b"other bytes")
    support = [Sample(str(tmp_path / "a.png"), "image", path=tmp_path / "a.png", label="cat"),
               Sample(str(tmp_path / "c.png"), "image", path=tmp_path / "c.png", label="dog"),
               Sample("gone.png", "image", path=tmp_path / "gone.png", label="dog")]
    inputs = [Sample(str(tmp_path / "b.png"), "image", path=tmp_path / "b.png")]
    assert find_duplicates(support, inputs) == [(str(tmp_path / "a.png"), str(tmp_path / "b.png"))]
    texts = text_samples(["a grey owl", "a cat"], ["owl", "cat"])
    with pytest.warns(LeakageWarning, match="1 example\\(s\\) have the same content.*text\\[0\\] = text\\[1\\]"):
        assert warn_duplicates(texts[:1], text_samples(["x", "a grey owl"])) == [("text[0]", "text[1]")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_duplicates(texts, text_samples(["nothing alike"])) == []


def test_a_support_set_from_another_model_is_refused():
    check_same_model("minilm@abc", "minilm@abc")
    with pytest.raises(InputError, match="embedded with model 'clip@1', but the inputs with 'minilm@abc'"):
        check_same_model("clip@1", "minilm@abc")
