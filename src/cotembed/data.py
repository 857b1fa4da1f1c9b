"""Inputs: image files, ImageFolder trees, CSV/JSONL manifests, text tables.

Collecting inputs only lists them (paths and labels, never pixels), so a folder
of any size costs well under a kilobyte per file; decoding happens later, batch by batch,
in :mod:`cotembed._pipeline`.

Files come from real machines, so listing is forgiving where that is safe and strict
where it is not: a CSV saved by Excel (BOM, ``;`` separators) reads like any other;
hidden files (``.DS_Store``, macOS ``._*`` resource forks, ``__MACOSX`` folders) are
not inputs; labels are Unicode NFC, so a macOS (NFD) folder name matches the class it
spells; and a manifest may only name files inside its own folder unless the caller
allows more (``allow_outside=True``, ``--allow-outside-paths``), because a manifest
from elsewhere must not make cotembed read arbitrary files.
"""

from __future__ import annotations

import csv
import json
import math
import os
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from cotembed.errors import InputError, UnknownLabelError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
MANIFEST_EXTENSIONS = frozenset({".csv", ".jsonl"})
SKIPPED_FOLDERS = frozenset({"__MACOSX"})
"""Folders that archive tools add and that never hold inputs (besides hidden ones)."""
CSV_DELIMITERS = (",", ";", "\t")
"""Tried in order; Excel writes ``;`` where the decimal separator is a comma."""
MANIFEST_FIELDS = ("path", "text", "label")

InputKind = Literal["image", "text"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One input to classify: an image (a file's path, or its encoded bytes) or a text,
    with an optional label.

    An image reaches the decoder the same way whichever it carries, and its cache key
    comes from its bytes, so a file and the same bytes uploaded to the service share
    one embedding.
    """

    source: str
    """How the input is named in outputs: the path, ``file:row`` for texts, or a name the caller chose."""
    kind: InputKind
    path: Path | None = None
    text: str | None = None
    label: str | None = None
    data: bytes | None = None
    """An image's encoded bytes (PNG, JPEG, ...) when it has no file of its own (an upload, a PIL image)."""

    @classmethod
    def from_bytes(cls, data: bytes, source: str, label: str | None = None) -> Sample:
        """An image held in memory, named ``source`` in outputs and error messages."""
        return cls(source=source, kind="image", label=label, data=bytes(data))


def nfc(text: str) -> str:
    """Unicode NFC: macOS file systems hand out NFD names; people type NFC."""
    return unicodedata.normalize("NFC", text)


def is_hidden(name: str) -> bool:
    """Dot files (``.DS_Store``, ``._photo.jpg`` resource forks) and archive leftovers."""
    return name.startswith(".") or name in SKIPPED_FOLDERS


_EXTRA = "\0extra"  # where DictReader puts fields beyond the header


def _csv_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        header = fh.readline()
        if not header.strip():
            raise InputError(f"{path}: empty CSV; expected a header with path,label or text,label")
        delimiter = next(
            (d for d in CSV_DELIMITERS if {f.strip().lower() for f in next(csv.reader([header], delimiter=d))} & {"path", "text"}),
            ",",
        )
        fh.seek(0)  # resets the decoder, which skips the BOM again
        reader = csv.DictReader(fh, delimiter=delimiter, restkey=_EXTRA)
        assert reader.fieldnames is not None
        reader.fieldnames = [f.strip().lower() for f in reader.fieldnames]
        rows: list[tuple[int, dict[str, Any]]] = []
        for row in reader:
            lineno = reader.line_num
            extra = row.get(_EXTRA)
            if extra:
                raise InputError(
                    f"{path}:{lineno}: {len(extra)} more field(s) than the header has "
                    f"({', '.join(reader.fieldnames)}); quote fields that contain '{delimiter}'"
                )
            rows.append((lineno, row))
        return rows


def _jsonl_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    with path.open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: malformed JSON line: {exc.msg}") from exc
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object with path/text and label")
            rows.append((lineno, {str(k).strip().lower(): v for k, v in obj.items()}))
    return rows


MANIFEST_READERS: dict[str, Callable[[Path], list[tuple[int, dict[str, Any]]]]] = {".csv": _csv_rows, ".jsonl": _jsonl_rows}


def _read_manifest_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """Rows of a CSV (header line) or JSONL (one object a line), with line numbers."""
    try:
        return MANIFEST_READERS[path.suffix.lower()](path)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason}); in Excel, save as 'CSV UTF-8'") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read manifest: {exc.strerror or exc}") from exc


def _field(value: Any, where: str, name: str) -> str | None:
    """A manifest value as text: strings as they are, finite numbers as written
    (a JSONL label 3 is the class "3", as in a CSV); anything else is an error."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{where}: field '{name}' must be a string, got {type(value).__name__} {json.dumps(value)[:60]}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{where}: field '{name}' is {value}, not a finite number or a string")
    return str(value)


def _locate(manifest: Path, raw: str) -> tuple[Path, bool]:
    """The image a manifest row names, lexically normalised (so ``a/../b`` reads as ``b``),
    and whether it lies inside the manifest's folder."""
    base = manifest.parent
    image = Path(os.path.normpath(base / raw))  # an absolute raw path stays absolute
    inside_base = os.path.abspath(base)
    inside = os.path.commonpath([inside_base, os.path.abspath(image)]) == inside_base
    if not raw.isascii() and not image.exists():  # a name typed in NFC for a file saved in NFD, or back
        for form in ("NFC", "NFD"):
            other = Path(unicodedata.normalize(form, str(image)))
            if other.exists():
                return other, inside
    return image, inside


def _manifest_samples(path: Path, allow_outside: bool = False) -> list[Sample]:
    rows = _read_manifest_rows(path)
    samples: list[Sample] = []
    outside: list[str] = []
    for lineno, row in rows:
        where = f"{path}:{lineno}"
        label = _field(row.get("label"), where, "label")
        label = nfc(label.strip()) if label is not None and label.strip() else None
        image = _field(row.get("path"), where, "path")
        text = _field(row.get("text"), where, "text")
        if image is not None and image.strip():
            located, inside = _locate(path, image.strip())
            if not inside and not allow_outside:
                outside.append(f"line {lineno}: {image.strip()!r}")
            samples.append(Sample(source=str(located), kind="image", path=located, label=label))
        elif text is not None and text.strip():
            samples.append(Sample(source=where, kind="text", text=text, label=label))
        else:
            raise InputError(f"{where}: row has no 'path' or 'text' field (columns: path,label or text,label)")
    if outside:
        shown = "; ".join(outside[:5]) + (f"; and {len(outside) - 5} more" if len(outside) > 5 else "")
        raise InputError(
            f"{path}: {len(outside)} path(s) point outside the manifest's folder {path.parent or '.'}: {shown}; "
            "move the manifest up, or pass --allow-outside-paths (allow_outside=True) if it is trusted"
        )
    return samples


def _images_under(folder: Path) -> list[Path]:
    """Image files below ``folder`` (any depth), hidden files and folders left out."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not is_hidden(d)]
        found.extend(Path(root) / f for f in files if not is_hidden(f) and Path(f).suffix.lower() in IMAGE_EXTENSIONS)
    return sorted(found)


def _folder_samples(folder: Path) -> list[Sample]:
    """ImageFolder layout (one sub-folder per class) or a flat folder of unlabelled images."""
    entries = sorted(p for p in folder.iterdir() if not is_hidden(p.name))
    samples = [
        Sample(source=str(p), kind="image", path=p)
        for p in entries
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    for sub in (p for p in entries if p.is_dir()):
        label = nfc(sub.name)
        samples.extend(Sample(source=str(p), kind="image", path=p, label=label) for p in _images_under(sub))
    return samples


def collect_samples(inputs: Iterable[str | Path], *, allow_outside: bool = False) -> list[Sample]:
    """Expand files, folders and manifests into a flat, deterministic list of samples.

    ``allow_outside``: let manifests name files outside their own folder (``../``,
    absolute paths); off by default so an untrusted manifest cannot read just anything.
    """
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
            samples.extend(_manifest_samples(path, allow_outside))
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


def resolve_labels(samples: list[Sample], resolve: Callable[[str], str | None],
                   ignore_unknown: bool = False) -> tuple[list[Sample], list[Sample]]:
    """Map every label (NFC) through ``resolve`` (label -> class name or None).

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
        label = nfc(s.label)
        cls_name = resolve(label)
        if cls_name is None:
            unknown.setdefault(label, s.source)
            skipped.append(s)
        else:
            kept.append(s if cls_name == s.label else replace(s, label=cls_name))
    if unknown and not ignore_unknown:
        shown = ", ".join(f"{lbl!r} (first at {src})" for lbl, src in list(unknown.items())[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise UnknownLabelError(
            f"{len(unknown)} label(s) are not classes of the system: {shown}{more}; "
            "fix the labels, add aliases to the system, or pass --ignore-unknown"
        )
    return kept, skipped
