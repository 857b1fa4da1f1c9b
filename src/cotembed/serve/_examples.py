"""Labelled examples a registered system carries in the service, and refinement on a request's batch.

``POST /v1/systems/{name}/examples`` adds labelled inputs (texts or images, as in
/v1/classify, with one label per input) to the system's support set for one model;
they are embedded through the same batcher and cache as every input. ``DELETE`` clears
them. ``/v1/classify`` with method ``prototype``, ``gda`` or ``fused`` fits the method on
that support set (once per set of parameters and examples, then kept), and with
``transductive: true`` refines any method's posterior on the request's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cotembed.scoring import Scorer
from cotembed.scoring._transductive_method import Transductive, settings_notes
from cotembed.serve._errors import invalid

MAX_FITTED = 32
"""Fitted scorers kept per system and model (different method parameters); the oldest go first."""


class ExamplesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="the served model the examples are for (default: the first)")
    input: list[str | dict[str, Any]] = Field(..., min_length=1, description="texts or images, as in /v1/classify")
    labels: list[str] = Field(..., min_length=1, description="the class (or alias) of each input, in order")
    ignore_unknown: bool = Field(False, description="skip examples whose label is no class of the system "
                                                     "(else the request is refused, listing them)")


@dataclass
class SupportSet:
    """One system's labelled examples for one model: unit embeddings and class indices."""

    embeddings: np.ndarray
    labels: np.ndarray
    version: int = 0
    fitted: dict[tuple[str, str], Scorer] = field(default_factory=dict)

    def describe(self, class_names: tuple[str, ...]) -> dict[str, Any]:
        counts = np.bincount(self.labels, minlength=len(class_names))
        return {"examples": int(len(self.labels)), "classes_with_examples": int((counts > 0).sum()),
                "classes_without_examples": [c for c, n in zip(class_names, counts) if n == 0]}


def resolve_labels(labels: list[str], n_inputs: int, resolve: Any, class_names: tuple[str, ...],
                   ignore_unknown: bool) -> tuple[list[int], list[int]]:
    """(rows kept, their class indices); unknown labels are a 422 listing them unless ignored."""
    if len(labels) != n_inputs:
        raise invalid(f"{len(labels)} labels for {n_inputs} inputs: give one label per input", "labels")
    index = {c: i for i, c in enumerate(class_names)}
    rows, classes, unknown = [], [], []
    for j, label in enumerate(labels):
        name = resolve(label)
        if name is None:
            unknown.append((j, label))
        else:
            rows.append(j)
            classes.append(index[name])
    if unknown and not ignore_unknown:
        shown = ", ".join(f"labels[{j}] {label!r}" for j, label in unknown[:10])
        raise invalid(f"{len(unknown)} label(s) are not classes (or aliases) of the system: {shown}; "
                      "send ignore_unknown: true to skip them", f"labels[{unknown[0][0]}]")
    if not rows:
        raise invalid("no example has a label of the system's classes", "labels")
    return rows, classes


def add_examples(entry: Any, model_key: str, embeddings: np.ndarray, classes: list[int]) -> SupportSet:
    """Append to the system's support set for ``model_key`` (fitted methods are refitted on next use)."""
    x = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    old = entry.examples.get(model_key)
    if old is None:
        support = SupportSet(x.astype(np.float32), np.asarray(classes, dtype=np.int64))
    else:
        support = SupportSet(np.concatenate([old.embeddings, x]).astype(np.float32),
                             np.concatenate([old.labels, np.asarray(classes, dtype=np.int64)]), old.version + 1)
    entry.examples[model_key] = support
    return support


def fitted_scorer(entry: Any, model_key: str, scorer: Scorer, method: str, options_key: str) -> Scorer:
    """``scorer`` with its few-shot ``method`` fitted on the system's examples for this model (kept)."""
    support = entry.examples.get(model_key)
    if support is None:
        raise invalid(f"method {method} needs labelled examples: system {entry.name!r} has none for model "
                      f"{model_key}; add them with POST /v1/systems/{entry.name}/examples", "method")
    key = (method, options_key)
    found: Scorer | None = support.fitted.get(key)
    if found is None:
        batches = [b for _, b in scorer.batches(support.embeddings, (method,))]
        found = scorer.with_methods([scorer.method(method).fit_examples(batches, support.labels)])
        while len(support.fitted) >= MAX_FITTED:
            support.fitted.pop(next(iter(support.fitted)))
        support.fitted[key] = found
    return found


def refined_scorer(scorer: Scorer, method: str, x: np.ndarray) -> tuple[Scorer, list[str]]:
    """``scorer`` with ``method`` refined on the request's inputs, and the fallback note if the batch is too small."""
    prepared = scorer.with_methods([Transductive(scorer.method(method))]).prepare(x)
    return prepared, settings_notes(prepared.method(method).settings(scorer.compiled))


__all__ = ["ExamplesRequest", "SupportSet", "add_examples", "fitted_scorer", "refined_scorer", "resolve_labels"]
