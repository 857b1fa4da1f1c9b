"""Labelled examples and unlabelled batches with a classifier: fitting the few-shot methods, transduction.

The scoring is pure numpy (:mod:`cotembed.scoring._fewshot_methods`,
:mod:`cotembed.scoring._transductive_method`); this module is the glue that needs a
classifier: it collects a support set (folders, manifests, samples, or an
:class:`~cotembed._embeddings.EmbeddingSet` saved with the same model), checks it
(:mod:`cotembed._support`), embeds it through the cache like every other input, and
fits each few-shot method on it. Test inputs are never read here: the fusion weight is
chosen by leave-one-out on the examples alone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cotembed._embeddings import EmbeddingSet
from cotembed._support import (
    LeakageWarning,
    check_same_model,
    check_support_labels,
    classes_without_examples,
    warn_duplicates,
)
from cotembed.data import Sample, collect_samples
from cotembed.errors import InputError
from cotembed.scoring import Scorer, ScoringMethod, method_class, method_names
from cotembed.scoring._transductive_method import Transductive, settings_notes

# The classifier imports this module to fit its few-shot methods; it is named here, not imported.
CoTClassifier = Any

EMBEDDING_SET_SUFFIX = ".npz"
"""An examples path with this suffix is an embedding set written by ``EmbeddingSet.save``."""


@dataclass
class ExamplesReport:
    """Where a support set came from and what of it was used."""

    source: list[str]
    n_examples: int
    classes_without: list[str] = field(default_factory=list)
    skipped_unknown: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    leaks: list[tuple[str, str]] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "count": self.n_examples, "methods": self.methods}
        if self.classes_without:
            out["classes_without_examples"] = self.classes_without
        if self.skipped_unknown:
            out["skipped_unknown_labels"] = self.skipped_unknown
        if self.failed:
            out["failed"] = self.failed
        if self.leaks:
            out["same_content_as_inputs"] = [{"example": a, "input": b} for a, b in self.leaks]
        return out

    def notes(self) -> list[str]:
        """What a person should know about the examples (printed to stderr, listed in JSON ``notes``)."""
        out = []
        if self.skipped_unknown:
            out.append(f"--examples: {len(self.skipped_unknown)} example(s) skipped (--ignore-unknown): their label is "
                       "no class of the system")
        if self.failed:
            out.append(f"--examples: {len(self.failed)} example(s) could not be used and were left out")
        if self.classes_without:
            shown = ", ".join(self.classes_without[:10]) + (" ..." if len(self.classes_without) > 10 else "")
            out.append(f"--examples: {len(self.classes_without)} class(es) have no example and keep their zero-shot "
                       f"score: {shown}")
        if self.leaks:
            out.append(f"--examples: warning: {len(self.leaks)} example(s) have the same content as an input being "
                       f"classified (leakage: accuracy on them is not a test), e.g. {self.leaks[0][0]} = {self.leaks[0][1]}")
        return out


def example_methods() -> tuple[str, ...]:
    """Registered methods fitted on labelled examples (prototype, gda, fused, ...)."""
    return tuple(n for n in method_names() if method_class(n).uses_examples)


def configured_methods(clf: "CoTClassifier", names: Sequence[str]) -> list[ScoringMethod]:
    """The classifier's configured method objects, each refined on the batch when ``clf.transductive``."""
    methods = [clf.config.method(n) for n in names]
    return [Transductive(m) for m in methods] if clf.transductive else methods


def _as_paths(examples: Any) -> list[str] | None:
    if isinstance(examples, (str, Path)):
        return [str(examples)]
    if isinstance(examples, (list, tuple)) and examples and all(isinstance(e, (str, Path)) for e in examples):
        return [str(e) for e in examples]
    return None


def _resolved(data: EmbeddingSet, resolve: Any, ignore_unknown: bool, where: str) -> tuple[EmbeddingSet, list[str]]:
    """A precomputed set with its labels resolved to classes, and the rows skipped as unknown."""
    as_samples = [Sample(source=s, kind="text", text="", label=label) for s, label in zip(data.sources, data.labels)]
    kept, left = check_support_labels(as_samples, resolve, ignore_unknown, where)
    keep = {s.source: s.label for s in kept}
    rows = [i for i, src in enumerate(data.sources) if src in keep]
    out = data.subset(rows)
    out.labels = [keep[s] for s in out.sources]
    return out, [s.source for s in left]


def _concatenate(parts: Sequence[EmbeddingSet], model_key: str) -> EmbeddingSet:
    used = [p for p in parts if len(p)]
    if len(used) == 1 and len(parts) == 1:
        return used[0]
    embeddings = np.concatenate([p.embeddings for p in used]) if used else np.zeros((0, 0), dtype=np.float32)
    return EmbeddingSet(embeddings, [s for p in used for s in p.sources], [lbl for p in used for lbl in p.labels], model_key,
                        errors=[e for p in parts for e in p.errors])


def _support_data(clf: "CoTClassifier", examples: Any, ignore_unknown: bool, inputs: Sequence[Sample],
                  where: str, allow_outside: bool = False) -> tuple[EmbeddingSet, list[str], list[tuple[str, str]]]:
    """The support set's embeddings (labels resolved to classes), the skipped examples and the leaks."""
    resolve, model_key = clf.system.resolve_label, clf.encoder.model_key
    paths = _as_paths(examples)
    precomputed: list[EmbeddingSet] = []
    samples: list[Sample] = []
    if isinstance(examples, EmbeddingSet):
        check_same_model(examples.model_key, model_key, where)
        precomputed.append(examples)
    elif paths is not None:
        for path in paths:
            if path.lower().endswith(EMBEDDING_SET_SUFFIX):
                loaded = EmbeddingSet.load(path)
                check_same_model(loaded.model_key, model_key, f"{where} {path}")
                precomputed.append(loaded)
            else:
                samples.extend(collect_samples([path], allow_outside=allow_outside))
    elif isinstance(examples, (list, tuple)) and examples and all(isinstance(s, Sample) for s in examples):
        samples = list(examples)
    else:
        raise InputError(f"{where}: give folders or manifests (paths), samples, or an EmbeddingSet; got {type(examples).__name__}")
    parts, skipped = [], []
    for data in precomputed:
        kept_set, left = _resolved(data, resolve, ignore_unknown, where)
        parts.append(kept_set)
        skipped += left
    leaks: list[tuple[str, str]] = []
    if samples:
        kept, left_samples = check_support_labels(samples, resolve, ignore_unknown, where)
        skipped += [s.source for s in left_samples]
        if inputs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LeakageWarning)  # reported by the caller, with the other notes
                leaks = warn_duplicates(kept, inputs)
        parts.append(clf.embedding_set(kept))
    return _concatenate(parts, model_key), skipped, leaks


def labelled_embeddings(clf: "CoTClassifier", examples: Any, ignore_unknown: bool = False,
                        where: str = "examples") -> EmbeddingSet:
    """The embeddings of labelled ``examples`` (paths, samples or an EmbeddingSet) with their labels resolved to
    the system's classes, through ``clf``'s encoder and cache: a support set kept outside a classifier (the service's)."""
    data, skipped, _ = _support_data(clf, examples, ignore_unknown, (), where)
    if not len(data):
        if data.errors:
            raise InputError(f"{where}: no usable example: {data.errors[0].source}: {data.errors[0].error}")
        raise InputError(f"{where}: no example belongs to a class of the system"
                         + (f" ({len(skipped)} skipped by their unknown labels)" if skipped else ""))
    return data


def fit_examples(clf: "CoTClassifier", examples: Any, methods: Sequence[str] | None = None, ignore_unknown: bool = False,
                 inputs: Sequence[Sample] = (), where: str = "examples",
                 allow_outside: bool = False) -> tuple[dict[str, Any], ExamplesReport]:
    """Method options of ``clf`` with every few-shot method in ``methods`` (default: all) fitted on ``examples``.

    Bad input: examples without a label, or whose label is no class of the system (listed;
    skipped with ``ignore_unknown``), a support set in which no class has an example, or
    embedded with another model (refused: InputError). Classes without examples keep their
    zero-shot score; examples with the same content as one of ``inputs`` are reported as
    leaks (``ExamplesReport.leaks``). Only the examples' labels are read. ``allow_outside``:
    manifests may name files outside their own folder.
    """
    names = tuple(m for m in (methods or example_methods()) if method_class(m).uses_examples)
    if not names:
        raise InputError(f"{where}: none of the methods {', '.join(methods or ())} uses labelled examples; "
                         f"choose one of {', '.join(example_methods())}")
    data, skipped, leaks = _support_data(clf, examples, ignore_unknown, inputs, where, allow_outside)
    source = _as_paths(examples) or ([f"{len(data)} embeddings"] if isinstance(examples, EmbeddingSet) else [f"{len(data)} samples"])
    if not len(data):
        if data.errors:
            raise InputError(f"{where}: no usable example: {data.errors[0].source}: {data.errors[0].error}")
        raise InputError(f"{where}: no example belongs to a class of the system"
                         + (f" ({len(skipped)} skipped by their unknown labels)" if skipped else ""))
    class_names = clf.compiled.class_names
    missing = classes_without_examples(data.labels, class_names, where=where)
    labels = data.label_indices(class_names)
    scorer = Scorer.build(clf.system, clf.prompt_bank.embed, clf.config, configured_methods(clf, names))
    options = dict(clf.config.method_options)
    for name in names:
        method = scorer.method(name)
        fitted = method.fit_examples([b for _, b in scorer.batches(data.embeddings, (name,))], labels)
        value = fitted.params["examples"].with_source(source, clf.encoder.model_key, len(skipped) + len(data.errors))
        options[fitted.option_prefix + "examples"] = value
    report = ExamplesReport(source, len(data), missing, skipped, [e.source for e in data.errors], leaks, list(names))
    return options, report


def provenance(clf: "CoTClassifier", settings: Mapping[str, Any]) -> dict[str, Any]:
    """What a result records about examples and transduction: their source and count, on/off, and notes
    (``settings``: the methods' settings as scored, where a batch too small to refine left its note)."""
    out: dict[str, Any] = {"transductive": bool(clf.transductive)}
    notes = settings_notes(settings)
    if clf.examples_report is not None:
        out["examples"] = clf.examples_report.to_dict()
        notes = clf.examples_report.notes() + notes
    if notes:
        out["notes"] = notes
    return out


__all__ = ["ExamplesReport", "configured_methods", "example_methods", "fit_examples", "labelled_embeddings", "provenance"]
