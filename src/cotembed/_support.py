"""Checks on a labelled support set (few-shot examples) before it is used.

Few-shot scoring trusts its examples, so the mistakes that silently spoil it are
caught here with messages that name the inputs: labels that are not classes of the
system (listed; skippable), classes left without examples (they keep their zero-shot
score, so this is reported rather than refused, unless every class is required),
examples whose content is also a test input (leakage: warned), and a support set
embedded with another model than the inputs (refused: the spaces do not match).
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

from cotembed.cache import content_key, text_key
from cotembed.data import Sample, resolve_labels
from cotembed.errors import InputError


class LeakageWarning(UserWarning):
    """Support examples whose content is also an input being classified."""


def check_support_labels(samples: Sequence[Sample], resolve: Callable[[str], str | None],
                         ignore_unknown: bool = False, where: str = "examples") -> tuple[list[Sample], list[Sample]]:
    """(kept, skipped) examples with labels resolved to class names.

    Every example needs a label. Labels that are no class (or alias) of the system are an
    :class:`~cotembed.errors.UnknownLabelError` listing them, unless ``ignore_unknown``,
    which returns those examples as skipped.
    """
    unlabelled = [s.source for s in samples if not s.label]
    if unlabelled:
        shown = ", ".join(unlabelled[:10]) + (f" and {len(unlabelled) - 10} more" if len(unlabelled) > 10 else "")
        raise InputError(f"{where}: {len(unlabelled)} example(s) have no label: {shown}; every example needs its class")
    return resolve_labels(list(samples), resolve, ignore_unknown=ignore_unknown)


def classes_without_examples(labels: Sequence[str | None], class_names: Sequence[str], require_all: bool = False,
                             where: str = "examples") -> list[str]:
    """The classes no example belongs to (they keep their zero-shot score).

    An empty support set is an error; so is any class without examples when ``require_all``
    (few-shot methods that have no zero-shot fallback).
    """
    counts = dict.fromkeys(class_names, 0)
    for label in labels:
        if label in counts:
            counts[label] += 1
    if not any(counts.values()):
        raise InputError(f"{where}: no example belongs to a class of the system ({len(class_names)} classes)")
    missing = [c for c, n in counts.items() if n == 0]
    if missing and require_all:
        shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise InputError(f"{where}: {len(missing)} class(es) have no example: {shown}; give at least one per class")
    return missing


def sample_key(sample: Sample) -> str | None:
    """The content key of an input (text or file bytes); None when the file cannot be read."""
    if sample.text is not None:
        return text_key(sample.text)
    if sample.path is None:
        return None
    try:
        return content_key(sample.path.read_bytes())
    except OSError:
        return None


def find_duplicates(support: Sequence[Sample], inputs: Sequence[Sample]) -> list[tuple[str, str]]:
    """(support source, input source) pairs with the same content: examples that would leak into the test."""
    by_key: dict[str, str] = {}
    for s in inputs:
        key = sample_key(s)
        if key is not None:
            by_key.setdefault(key, s.source)
    out = []
    for s in support:
        key = sample_key(s)
        if key is not None and key in by_key:
            out.append((s.source, by_key[key]))
    return out


def warn_duplicates(support: Sequence[Sample], inputs: Sequence[Sample]) -> list[tuple[str, str]]:
    """:func:`find_duplicates`, with a :class:`LeakageWarning` naming them when there are any."""
    pairs = find_duplicates(support, inputs)
    if pairs:
        shown = ", ".join(f"{a} = {b}" for a, b in pairs[:5]) + (f" and {len(pairs) - 5} more" if len(pairs) > 5 else "")
        warnings.warn(f"{len(pairs)} example(s) have the same content as an input being classified (leakage: "
                      f"accuracy on them is not a test): {shown}", LeakageWarning, stacklevel=2)
    return pairs


def check_same_model(support_model_key: str, inputs_model_key: str, where: str = "examples") -> None:
    """Refuse a support set embedded with another model than the inputs (incomparable spaces)."""
    if support_model_key != inputs_model_key:
        raise InputError(f"{where}: embedded with model {support_model_key!r}, but the inputs with {inputs_model_key!r}; "
                         "embed the examples with the same model")


__all__ = [
    "LeakageWarning",
    "check_same_model",
    "check_support_labels",
    "classes_without_examples",
    "find_duplicates",
    "sample_key",
    "warn_duplicates",
]
