"""Embeddings stored as a Parquet dataset (written by ``cotembed embed``) as a run's inputs:
no model call on them; the model loads only for prompts the cache does not hold."""

from __future__ import annotations

import numpy as np

from cotembed._classifier import CoTClassifier
from cotembed._embeddings import EmbeddingSet
from cotembed._predictions import Prediction
from cotembed.errors import InputError
from cotembed.runs._resources import RunResources
from cotembed.system import System


def stored_model_spec(path: str, res: RunResources, spec: str | None) -> tuple[str, str]:
    """(model spec, model key) of the dataset at ``path``: ``spec``, or when None the spec the
    dataset was written with; a model whose key differs from the dataset's is refused (both named)."""
    from cotembed._parquet import check_model, read_info_or_fail

    info = read_info_or_fail(path)
    spec = spec or info.model_spec or info.model_key
    check_model(info, path, res.encoder(spec).model_key)
    return spec, info.model_key


def stored_embeddings(path: str, res: RunResources, spec: str | None,
                      notices: list[str] | None = None) -> tuple[EmbeddingSet, str]:
    """The dataset at ``path`` and the model spec whose prompts score it.

    ``spec`` None: the spec the dataset was written with. Another model key is refused. Rows
    that could not be read are skipped, with a notice each unless the run is quiet.
    """
    from cotembed._parquet import read_embedding_set

    spec, model_key = stored_model_spec(path, res, spec)
    data = read_embedding_set(path, model_key)
    if notices is not None and not res.model.quiet:
        notices.extend(f"--embeddings: skipped {e.source}: {e.error}" for e in data.errors)
    return data, spec


def resolve_stored_labels(data: EmbeddingSet, system: System, ignore_unknown: bool) -> EmbeddingSet:
    """Labels mapped to the system's classes (aliases, case); unknown ones refused or, if asked, skipped."""
    from cotembed.data import nfc
    from cotembed.errors import UnknownLabelError

    keep: list[int] = []
    unknown: dict[str, str] = {}
    labels: list[str | None] = []
    for row, label in enumerate(data.labels):
        name = system.resolve_label(nfc(label)) if label is not None else None
        if label is not None and name is None:
            unknown.setdefault(label, data.sources[row])
            continue
        keep.append(row)
        labels.append(name)
    if unknown and not ignore_unknown:
        shown = ", ".join(f"{lbl!r} (first at {src})" for lbl, src in list(unknown.items())[:10])
        raise UnknownLabelError(f"{len(unknown)} label(s) are not classes of the system: {shown}; add --ignore-unknown to skip them")
    subset = data.subset(keep)
    subset.labels = labels
    subset.errors = data.errors
    kept = set(keep)
    subset.skipped = [data.sources[i] for i in range(len(data)) if i not in kept]
    return subset


def predictions_from_set(clf: CoTClassifier, data: EmbeddingSet, top_k: int) -> list[Prediction]:
    """Predictions of the classifier's method for every row of an embedding set (no model call)."""
    scores = clf.scorer.scores(data.embeddings, clf.method) if len(data) else np.zeros((0, len(clf.classes_)), dtype=np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")[:, : max(1, top_k)]
    out = []
    for source, label, row, idx in zip(data.sources, data.labels, scores, order):
        top = [(str(clf.classes_[i]), float(row[i])) for i in idx]
        out.append(Prediction(source, top[0][0], top[0][1], top, label))
    return out


def unlabelled_rows(data: EmbeddingSet, path: str) -> None:
    """A verb that learns from labels refuses a dataset with rows that have none."""
    unlabelled = [s for s, label in zip(data.sources, data.labels) if label is None]
    if unlabelled:
        raise InputError(f"--embeddings {path}: {len(unlabelled)} row(s) have no label (e.g. {unlabelled[0]}); "
                         "this verb learns from labelled data: embed an ImageFolder or a manifest with a label column")


def labelled_stored_set(path: str, model_key: str, system: System, ignore_unknown: bool,
                        notices: list[str] | None = None) -> EmbeddingSet:
    """The labelled dataset at ``path`` for a verb that learns from labels: rows without a label
    refused, labels mapped to the system's classes; rows that could not be read go to ``notices``."""
    from cotembed._parquet import read_embedding_set

    stored = read_embedding_set(path, model_key)
    if notices is not None:
        notices.extend(f"--embeddings: skipped {e.source}: {e.error}" for e in stored.errors)
    unlabelled_rows(stored, path)
    data = resolve_stored_labels(stored, system, ignore_unknown)
    if not len(data):
        raise InputError(f"--embeddings {path}: no labelled row of this system's classes")
    return data


__all__ = ["labelled_stored_set", "predictions_from_set", "resolve_stored_labels", "stored_embeddings", "stored_model_spec",
           "unlabelled_rows"]
