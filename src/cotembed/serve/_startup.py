"""Labelled data a served system is given at start: few-shot examples and conformal calibration.

``cotembed serve --examples NAME=DATA`` gives the system registered as NAME a support set
for every served model, as ``POST /v1/systems/{name}/examples`` would (so prototype, gda and
fused answer from the first request, and every worker process holds the same set);
``--conformal ALPHA --conformal-data NAME=DATA`` calibrates split-conformal sets for the
system's ``cot`` posterior, as ``cotembed classify --conformal`` does, so a request asks for
``"conformal": true`` instead of passing a threshold. DATA is what the CLI reads (a folder
with a sub-folder per class, a manifest with labels, or an ``.npz`` embedding set); it is
embedded through the embedding cache, so a restart (or a second worker) encodes nothing again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cotembed.errors import InputError

# The registry calls in here, so the registry's types are not imported back (no import cycle): a registry,
# its ServedModel and SystemEntry are taken as they come.
CONFORMAL_METHOD = "cot"
"""The method whose posterior the service calibrates conformal sets on (the default of /v1/classify)."""


def _entry(registry: Any, name: str, flag: str) -> Any:
    entry = registry.systems.get(name)
    if entry is None:
        known = ", ".join(registry.systems) or "none"
        raise InputError(f"{flag} {name}=...: no system is registered as {name!r} at start; registered: {known}")
    return entry


def _classifier(model: Any, entry: Any) -> Any:
    from cotembed._classifier import CoTClassifier

    clf = CoTClassifier(entry.system, model.encoder, method=CONFORMAL_METHOD, cache=model.cache,
                        max_pixels=model.settings.limits.max_pixels)
    clf.prompt_bank = model.bank  # the prompts the service embedded already
    return clf


def load_examples(registry: Any, examples: tuple[tuple[str, str], ...]) -> None:
    """Each (system name, DATA) into that system's support set, for every model."""
    from cotembed._examples import labelled_embeddings
    from cotembed.serve._examples import add_examples

    for name, data in examples:
        entry = _entry(registry, name, "--examples")
        for model in registry.models.values():
            found = labelled_embeddings(_classifier(model, entry), [data], where=f"--examples {name}={data}")
            add_examples(entry, model.key, found.embeddings, list(found.label_indices(entry.system.class_names)))


def calibrate(registry: Any, conformal_data: tuple[tuple[str, str], ...], alpha: float, score: str = "lac") -> None:
    """Each (system name, DATA): a split-conformal predictor at ``alpha`` for that system's ``cot`` posterior, per model."""
    for name, data in conformal_data:
        entry = _entry(registry, name, "--conformal-data")
        for model in registry.models.values():
            clf = _classifier(model, entry).with_conformal(alpha, [data], score)
            entry.conformal[model.key] = clf.decisions.conformal


def parse_assignments(values: list[str] | None, flag: str) -> tuple[tuple[str, str], ...]:
    """``NAME=DATA`` flags as (name, data) pairs; a value without ``=`` is an error naming the flag."""
    out = []
    for value in values or ():
        name, sep, data = value.partition("=")
        if not sep or not name.strip() or not data.strip():
            raise InputError(f"{flag} {value!r}: give NAME=DATA (the system's registered name, then its data)")
        if not Path(data.strip()).exists():  # before any model loads
            raise InputError(f"{flag} {value!r}: {data.strip()}: no such file or folder")
        out.append((name.strip(), data.strip()))
    return tuple(out)


__all__ = ["CONFORMAL_METHOD", "calibrate", "load_examples", "parse_assignments"]
