"""Inputs of a run checked before any model loads: the model can take them, labels map to classes."""

from __future__ import annotations

from collections.abc import Sequence

from cotembed.data import Sample, collect_samples, resolve_labels
from cotembed.errors import InputError
from cotembed.system import System


def check_model_inputs(specs: Sequence[str], samples: Sequence[Sample]) -> None:
    """A model that cannot take these inputs (``minilm`` on images) is an error before it loads."""
    from cotembed.encoders import parse_spec

    kinds = {s.kind for s in samples}
    for spec in specs:
        backend, _ = parse_spec(spec)
        unsupported = kinds - backend.modalities
        if unsupported:
            raise InputError(f"--model {spec}: cannot encode {', '.join(sorted(unsupported))} inputs "
                             f"(it takes: {', '.join(sorted(backend.modalities))})")


def labelled_samples(system: System, paths: Sequence[str], flag: str, specs: Sequence[str], *,
                     allow_outside: bool = False, ignore_unknown: bool = False) -> tuple[list[Sample], list[Sample]]:
    """Samples of ``paths`` with labels mapped to the system's classes, and the skipped ones.

    Everything here needs no model, so it runs before one loads: unlabelled data, data with
    no input of the system's classes (saying when ``ignore_unknown`` skipped them all), and
    inputs of a kind the model cannot encode are input errors naming ``flag``.
    """
    samples = collect_samples(list(paths), allow_outside=allow_outside)
    check_model_inputs(specs, samples)
    where = f"{flag} {', '.join(paths)}"
    unlabelled = [s.source for s in samples if s.label is None]
    if unlabelled:
        raise InputError(f"{where}: {len(unlabelled)} input(s) have no label (e.g. {unlabelled[0]}); "
                         "give an ImageFolder (one sub-folder per class) or a manifest with a label column")
    kept, skipped = resolve_labels(samples, system.resolve_label, ignore_unknown)
    if not kept and skipped:
        labels = sorted({str(s.label) for s in skipped})
        shown = ", ".join(repr(label) for label in labels[:10]) + (f" and {len(labels) - 10} more" if len(labels) > 10 else "")
        raise InputError(f"{where}: all {len(skipped)} labelled input(s) were skipped by --ignore-unknown: none of their "
                         f"labels is a class of the system ({shown}); check that the data and the system match")
    if not kept:
        raise InputError(f"{where}: no labelled inputs of this system's classes")
    return kept, skipped


def any_samples(paths: Sequence[str], flag: str, allow_outside: bool = False) -> list[Sample]:
    """The samples behind ``paths`` (labels kept as written: multi-label data names several classes)."""
    samples = collect_samples(list(paths), allow_outside=allow_outside)
    if not samples:
        raise InputError(f"{flag} {', '.join(paths)}: no inputs")
    return samples


__all__ = ["any_samples", "check_model_inputs", "labelled_samples"]
