"""Inputs: image files, ImageFolder trees, CSV/JSONL manifests, text tables.

Collecting inputs only lists them (paths and labels, never pixels), so a folder
of any size costs well under a kilobyte per file; decoding happens later, batch by batch,
in :mod:`cotembed.pipeline`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

from cotembed.errors import InputError, UnknownLabelError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
MANIFEST_EXTENSIONS = frozenset({".csv", ".jsonl"})

InputKind = Literal["image", "text"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One input to classify: an image path or a text, with an optional label."""

    source: str
    """How the input is named in outputs: the path, or ``file:row`` for texts."""
    kind: InputKind
    path: Path | None = None
    text: str | None = None
    label: str | None = None


def _read_manifest_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV (header line) or JSONL (one object a line), with line numbers."""
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames:
                    raise InputError(f"{path}: empty CSV; expected a header with path,label or text,label")
                return [(i + 2, row) for i, row in enumerate(reader)]
        rows = []
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{lineno}: malformed JSON line: {exc.msg}") from exc
                if not isinstance(obj, dict):
                    raise InputError(f"{path}:{lineno}: expected a JSON object with path/text and label")
                rows.append((lineno, {k: v for k, v in obj.items()}))
        return rows
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read manifest: {exc.strerror or exc}") from exc


def _manifest_samples(path: Path) -> list[Sample]:
    rows = _read_manifest_rows(path)
    samples: list[Sample] = []
    for lineno, row in rows:
        label = row.get("label")
        label = None if label is None or str(label).strip() == "" else str(label).strip()
        if row.get("path") not in (None, ""):
            image = Path(str(row["path"]))
            image = image if image.is_absolute() else path.parent / image
            samples.append(Sample(source=str(image), kind="image", path=image, label=label))
        elif row.get("text") not in (None, ""):
            samples.append(Sample(source=f"{path}:{lineno}", kind="text", text=str(row["text"]), label=label))
        else:
            raise InputError(f"{path}:{lineno}: row has no 'path' or 'text' field (columns: path,label or text,label)")
    return samples


def _folder_samples(folder: Path) -> list[Sample]:
    """ImageFolder layout (one sub-folder per class) or a flat folder of unlabelled images."""
    samples = [
        Sample(source=str(p), kind="image", path=p)
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for p in sorted(sub.rglob("*")):
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
                samples.append(Sample(source=str(p), kind="image", path=p, label=sub.name))
    return samples


def collect_samples(inputs: Iterable[str | Path]) -> list[Sample]:
    """Expand files, folders and manifests into a flat, deterministic list of samples."""
    samples: list[Sample] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = _folder_samples(path)
            if not found:
                raise InputError(f"{path}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
            samples.extend(found)
        elif path.suffix.lower() in MANIFEST_EXTENSIONS:
            if not path.exists():
                raise InputError(f"{path}: manifest not found")
            samples.extend(_manifest_samples(path))
        elif path.exists() or path.suffix.lower() in IMAGE_EXTENSIONS:
            # A missing image is reported per input later, not fatal here.
            samples.append(Sample(source=str(path), kind="image", path=path))
        else:
            raise InputError(f"{path}: no such file or folder")
    kinds = {s.kind for s in samples}
    if len(kinds) > 1:
        raise InputError("inputs mix images and texts; classify one kind per run")
    return samples


def text_samples(texts: Sequence[str], labels: Sequence[str | None] | None = None) -> list[Sample]:
    """Wrap raw strings (Python API) as text samples."""
    labels = labels if labels is not None else [None] * len(texts)
    return [Sample(source=f"text[{i}]", kind="text", text=t, label=l) for i, (t, l) in enumerate(zip(texts, labels))]


def resolve_labels(samples: list[Sample], resolve, ignore_unknown: bool = False) -> tuple[list[Sample], list[Sample]]:
    """Map every label through ``resolve`` (label -> class name or None).

    Unknown labels are an input error naming them, unless ``ignore_unknown``,
    in which case those samples are returned separately as skipped.
    """
    kept: list[Sample] = []
    skipped: list[Sample] = []
    unknown: dict[str, str] = {}
    for s in samples:
        if s.label is None:
            kept.append(s)
            continue
        cls_name = resolve(s.label)
        if cls_name is None:
            unknown.setdefault(s.label, s.source)
            skipped.append(s)
        else:
            kept.append(s if cls_name == s.label else Sample(s.source, s.kind, s.path, s.text, cls_name))
    if unknown and not ignore_unknown:
        shown = ", ".join(f"{lbl!r} (first at {src})" for lbl, src in list(unknown.items())[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise UnknownLabelError(
            f"{len(unknown)} label(s) are not classes of the system: {shown}{more}; "
            "fix the labels, add aliases to the system, or pass --ignore-unknown"
        )
    return kept, skipped
