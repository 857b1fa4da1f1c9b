"""HTML of the studio page: Jinja2 templates (autoescaped) fed with figures the library computed.

Nothing here computes a metric: the view models only pick, order and format what
:class:`~cotembed.studio._state.Figures` holds. The page is split into fragments so
an edit re-renders only what changed and the script swaps them in place.
"""

from __future__ import annotations

import base64
import io
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from cotembed.studio._state import OPTIMIZE_CANDIDATES, OPTIMIZE_SECONDS, Figures, Studio

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
STATIC_FILES = {"studio.js": "text/javascript", "studio.css": "text/css"}
THUMBNAIL_PX = 72
FRAGMENTS = ("status", "summary", "figures", "mistakes", "editor", "proposal", "diff")
"""Parts of the page an answer may replace; the editor's inputs are kept while a person types in them."""


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = pct
    env.filters["heat"] = heat
    return env


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def heat(share: float) -> str:
    """A cell colour for a share in [0, 1]: white to a deep blue (inline style values only, never user text)."""
    share = min(1.0, max(0.0, float(share)))
    light = 97 - 55 * share
    return f"hsl(214, 70%, {light:.0f}%)"


class Thumbnails:
    """Small JPEG data: URIs of image inputs, made once per row; texts are shown as text."""

    def __init__(self, studio: Studio):
        self.studio = studio
        self._made: dict[int, str | None] = {}

    def __call__(self, row: int) -> str | None:
        if row not in self._made:
            self._made[row] = self._make(row)
        return self._made[row]

    def _make(self, row: int) -> str | None:
        samples = self.studio.data.samples
        sample = samples[row] if row < len(samples) else None
        if sample is None or sample.path is None:
            return None
        try:
            from PIL import Image

            with Image.open(sample.path) as image:
                image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
                buf = io.BytesIO()
                image.convert("RGB").save(buf, format="JPEG", quality=82)
        except (OSError, ValueError):
            return None
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")

    def text(self, row: int) -> str | None:
        samples = self.studio.data.samples
        return samples[row].text if row < len(samples) else None


# --------------------------------------------------------------- view models
def _summary(studio: Studio, figures: Figures, disk: Figures) -> dict[str, Any]:
    methods = []
    if figures.report is not None and disk.report is not None:
        for name, result in figures.report.methods.items():
            before = disk.report.methods[name].acc1
            methods.append({"name": name, "acc1": result.acc1, "acc5": result.acc5, "recall": result.mean_per_class_recall,
                            "delta": None if result.acc1 is None or before is None else result.acc1 - before, "disk": before,
                            "prompts": result.prompts})
    static = figures.inspection.static
    return {
        "labelled": studio.labelled,
        "methods": methods,
        "chance": None if figures.report is None else figures.report.chance,
        "n_inputs": len(studio.data),
        "n_errors": len(studio.data.errors),
        "ceiling": static.ceiling,
        "temperature": figures.config.temperature,
        "elapsed_ms": figures.elapsed_ms,
        "n_predictions": len(figures.predictions or ()),
    }


def _figures(studio: Studio, figures: Figures) -> dict[str, Any]:
    out: dict[str, Any] = {"labelled": studio.labelled, "suggestions": [s.to_dict() for s in figures.inspection.suggestions[:30]]}
    report = figures.report
    if report is None:
        return out
    method = studio.methods[0]
    result = report.methods[method]
    confusion = result.confusion
    classes = list(result.class_names)
    support = confusion.sum(axis=1)
    out["method"] = method
    out["recall"] = sorted(({"cls": c, "value": v} for c, v in result.per_class_recall.items()), key=lambda r: (r["value"], r["cls"]))
    out["classes"] = classes
    out["confusion"] = confusion_rows(classes, confusion, support)
    data = figures.inspection.data
    out["questions"] = [] if data is None else [q.to_dict() for q in data.questions]
    return out


def confusion_rows(classes: list[str], confusion: Any, support: Any) -> list[Markup]:
    """The heatmap's rows as HTML, built here rather than in the template: N x N cells are most of the page's
    rendering time, and class names are escaped once each instead of once per cell."""
    names = [escape(c) for c in classes]
    rows = []
    for i, name in enumerate(names):
        cells = []
        counts = confusion[i].tolist()
        for j, count in enumerate(counts):
            diag = ' class="diag"' if i == j else ""
            if count:
                share = count / support[i] if support[i] else 0.0
                cells.append(f'<td{diag} style="background:{heat(share)}"><button type="button" class="cellbtn" data-true="{name}" '
                             f'data-pred="{names[j]}" title="{name} → {names[j]}">{count}</button></td>')
            else:
                cells.append(f"<td{diag}></td>")
        rows.append(Markup(f'<tr><th class="rowh">{name}</th>{"".join(cells)}</tr>'))
    return rows


def _mistakes(studio: Studio, figures: Figures, thumbs: Thumbnails) -> dict[str, Any]:
    if figures.mistakes is not None:
        first = figures.mistakes.methods[0]
        items = [{**m.to_dict(), "thumb": thumbs(m.row), "text": thumbs.text(m.row)} for m in first.shown]
        return {"labelled": True, "method": first.method, "misclassified": first.misclassified, "total": first.total, "inputs": items}
    items = [{**p, "thumb": thumbs(p["row"]), "text": thumbs.text(p["row"])} for p in figures.predictions or ()]
    return {"labelled": False, "inputs": items, "total": len(studio.data)}


def _editor(studio: Studio) -> dict[str, Any]:
    system = studio.system
    groups = [{"name": g.name, "prompt": g.prompt, "weight": g.weight, "options": list(g.options)} for g in system.groups]
    rules = [{"cls": c, "cells": [{"group": g.name, "text": " | ".join(g.options[j] for j in rule[g.name])} for g in system.groups]}
             for c, rule in system.rules.items()]
    return {"groups": groups, "rules": rules, "group_names": list(system.group_names)}


def context(studio: Studio, thumbs: Thumbnails) -> dict[str, Any]:
    figures = studio.figures()
    disk = studio.figures(studio.disk_system)
    proposal = studio.proposal
    return {
        "studio": {"file": str(studio.path), "name": studio.system.name or studio.path.stem, "fingerprint": studio.system.fingerprint,
                   "disk_fingerprint": studio.disk_system.fingerprint, "dirty": studio.system != studio.disk_system,
                   "can_undo": studio.position > 0, "can_redo": studio.position < len(studio.history) - 1,
                   "methods": list(studio.methods), "labelled": studio.labelled, "model": studio.data.model_key,
                   "has_examples": studio.examples is not None,
                   "llm": None if studio.llm is None else f"{studio.llm.settings.model} at {studio.llm.settings.host}"},
        "draft": studio.draft,
        "summary": _summary(studio, figures, disk),
        "figures": _figures(studio, figures),
        "mistakes": _mistakes(studio, figures, thumbs),
        "editor": _editor(studio),
        "proposal": None if proposal is None else {**proposal.to_dict(), "diff": studio.proposal_diff()},
        "optimization": None if studio.optimization is None else studio.optimization.to_dict(),
        "optimize_budget": OPTIMIZE_CANDIDATES,
        "optimize_seconds": f"{OPTIMIZE_SECONDS:g}",
        "diff": studio.diff(),
        "yaml": studio.draft["text"] if studio.draft else studio.render(),
    }


def fragments(studio: Studio, thumbs: Thumbnails, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every fragment's HTML (and the YAML text) for the page as it is now, but those in ``skip``."""
    ctx = context(studio, thumbs)
    env = environment()
    out = {name: env.get_template(f"{name}.html").render(ctx) for name in FRAGMENTS if name not in skip}
    out["yaml"] = ctx["yaml"]
    return out


def page(studio: Studio, thumbs: Thumbnails) -> str:
    ctx = context(studio, thumbs)
    return environment().get_template("page.html").render(ctx)


def cell_html(cell: dict[str, Any], thumbs: Thumbnails) -> str:
    items = [{**item, "thumb": thumbs(item["row"]), "text": thumbs.text(item["row"])} for item in cell["inputs"]]
    return environment().get_template("cell.html").render({"cell": {**cell, "inputs": items}})


def metrics(studio: Studio) -> dict[str, Any]:
    """The figures a program (or a test) reads: accuracy per method, fingerprint, history position."""
    figures = studio.figures()
    out: dict[str, Any] = {"fingerprint": studio.system.fingerprint, "labelled": studio.labelled,
                           "can_undo": studio.position > 0, "can_redo": studio.position < len(studio.history) - 1,
                           "dirty": studio.system != studio.disk_system, "draft": studio.draft, "elapsed_ms": figures.elapsed_ms}
    if figures.report is not None:
        out["accuracy"] = {m: r.acc1 for m, r in figures.report.methods.items()}
        out["question_accuracy"] = figures.report.question_accuracy
    else:
        out["predictions"] = figures.predictions
    return out


__all__ = ["FRAGMENTS", "STATIC", "STATIC_FILES", "Thumbnails", "cell_html", "context", "environment", "fragments", "metrics", "page"]
