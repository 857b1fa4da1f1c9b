"""Build the real-data benchmark tasks: ``build("plant-families", out_dir)``.

Each build reads installed public sources (installing the Debian package when allowed),
writes ``<out>/<name>/data.csv`` (``id,text,label``) and ``manifest.json`` (source package
versions, sha256 of every file read and of the CSV, the sampling seed, per-class counts,
licences). The same sources, seed and per-class cap give the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from cotembed.errors import InputError
from cotembed_experiments.datasets.sources import SourceMissingError, sha256_file
from cotembed_experiments.datasets.tasks import TASKS, Task, sample

DEFAULT_SEED = 0
BUILDER_VERSION = 1
"""Bumped whenever a builder's selection or text changes, so manifests tell builds apart."""


@dataclass(frozen=True)
class Built:
    name: str
    csv_path: Path
    manifest_path: Path
    n_rows: int
    n_classes: int


def task_names() -> list[str]:
    return list(TASKS)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise InputError(f"unknown dataset {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


def build(name: str, out_dir: str | Path, *, per_class: int | None = None, seed: int = DEFAULT_SEED,
          install: bool = True) -> Built:
    """Build one task into ``out_dir/name``; ``per_class`` caps each class (default: the task's
    cap; a small number gives the slice the tests build)."""
    task = get_task(name)
    if per_class is not None and per_class < 1:
        raise InputError(f"per_class={per_class!r} must be a positive integer")
    for source in task.sources:
        source.ensure(install)
    rows = task.rows()
    counts = Counter(label for _, _, label in rows)
    kept = {label for label, n in counts.items() if n >= task.min_per_class}
    per_class = task.per_class if per_class is None else per_class
    rows = sample([r for r in rows if r[2] in kept], per_class, seed)
    target = Path(out_dir) / name
    target.mkdir(parents=True, exist_ok=True)
    csv_path, manifest_path = target / "data.csv", target / "manifest.json"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("id", "text", "label"))
    writer.writerows(rows)
    _write_atomic(csv_path, buffer.getvalue())
    per_label = Counter(label for _, _, label in rows)
    manifest = {
        "name": name, "regime": task.regime, "description": task.description, "builder_version": BUILDER_VERSION,
        "seed": seed, "per_class": per_class, "min_per_class": task.min_per_class,
        "rows": len(rows), "classes": dict(sorted(per_label.items())),
        "dropped_classes": sorted(set(counts) - kept),
        "sources": [source.describe() for source in task.sources],
        "output": {"file": csv_path.name, "sha256": sha256_file(csv_path)},
    }
    _write_atomic(manifest_path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return Built(name, csv_path, manifest_path, len(rows), len(per_label))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


__all__ = ["BUILDER_VERSION", "Built", "SourceMissingError", "build", "get_task", "task_names"]
