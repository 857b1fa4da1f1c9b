"""A self-contained HTML report of an evaluation: one file, no network needed to open it.

The page shows the methods' headline metrics, per-class accuracy, each method's
confusion matrix as a heatmap (inline SVG), per-question accuracy, the
test-time-compute curve when one is given, and a seeded sample of misclassified
inputs with their thumbnails and per-question explanations.

Everything is inline (CSS, a few lines of JavaScript to sort tables, thumbnails
as ``data:`` URIs) and a Content-Security-Policy forbids any fetch, so the file
opens the same from a laptop, a mail attachment or an air-gapped machine.
Every text that comes from a system, a label or a file name is escaped.

The file stays bounded on large data sets: examples are a capped sample,
thumbnails are small and embedded once even when several methods show the same
input, the heatmap draws only non-empty cells and, above
:data:`HEATMAP_MAX_CLASSES` classes, only the classes most involved in confusions.

Rendering is a pure function of dicts (an ``EvalReport.to_dict()`` plus the
examples), built by :func:`report_section` from figures :mod:`cotembed.evaluation`
computes; the page is drawn by the Jinja2 templates in ``templates/`` with autoescaping
on, so no text reaches the page unescaped unless it is the page's own CSS or script.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence, cast

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from cotembed import __version__
from cotembed._embeddings import EmbeddingSet
from cotembed._io import atomic_write
from cotembed.errors import InputError
from cotembed.evaluation._evaluate import EvalReport
from cotembed.evaluation._figures import HEATMAP_MAX_CLASSES, heatmap_classes, question_chance, row_shares
from cotembed.evaluation._misclassified import DEFAULT_MAX_PER_METHOD, misclassified_examples
from cotembed.reporting._probability_figures import decisions_view, probability_view
from cotembed.reporting._text import neutralise
from cotembed.scoring import Scorer, get_method

DEFAULT_THUMB_PX = 96
TEXT_PREVIEW_CHARS = 280
MAX_ERRORS_SHOWN = 50
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
"""No fetch of any kind: the page can only use what is inside the file."""


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def _metric_text(result: Mapping[str, Any], metric: str) -> str:
    value = result.get(metric)
    text = (f"{value:.3f}" if metric == "ece" else pct(value)) if value is not None else "–"
    spread = result.get("spread", {}).get(metric)
    if spread and result.get("n_seeds", 1) > 1:
        text += f" ± {spread['std']:.3f}" if metric == "ece" else f" ± {100 * spread['std']:.1f}"
    return text


def _short_source(source: str) -> str:
    parts = source.replace("\\", "/").split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else source


def _clip(text: str, limit: int = TEXT_PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _neutral(value: Any) -> Any:
    """Every text a template prints shows control and bidi-control characters as escapes, so no
    name in the data can reorder the page; already-rendered markup passes through."""
    return neutralise(value, keep="\n\t") if isinstance(value, str) and not isinstance(value, Markup) else value


@functools.lru_cache(maxsize=1)
def _templates() -> Environment:
    """The template environment: autoescaped, and strict, so a misspelt field fails loudly instead of rendering empty."""
    env = Environment(loader=PackageLoader("cotembed.reporting", "templates"), autoescape=True, trim_blocks=True,
                      lstrip_blocks=True, undefined=StrictUndefined, finalize=_neutral)
    env.filters.update(pct=pct, fmt=format, metric=_metric_text, short_source=_short_source, clip=_clip)
    env.globals.update(marks={"right": "✓", "misled": "✗", "neither": "?"}, max_errors_shown=MAX_ERRORS_SHOWN)
    return env


_BETWEEN_TAGS = re.compile(r">[ \t]*\n\s*<")


def _render(template: str, **context: Any) -> Markup:
    """A template rendered, the line breaks that only lay out its source removed (as Django's spaceless):
    the page stays as compact as one written by hand. Escaped text cannot match: its ``<`` and ``>`` are entities."""
    return Markup(_BETWEEN_TAGS.sub("><", _templates().get_template(template).render(**context)))


# ------------------------------------------------------------------ thumbnails
def thumbnail_uri(source: Any, px: int = DEFAULT_THUMB_PX, max_pixels: int | None = None) -> str:
    """A ``data:`` URI of the image (a path, or its bytes) fitted in px x px.

    Decoded with the pipeline's bounded decoder (pixel cap: ``max_pixels``, else the
    pipeline's; JPEG draft mode), then stored as PNG or JPEG, whichever is smaller:
    drawings compress better as PNG, photos as JPEG. Raises ``ValueError`` naming the file when it cannot be read.
    """
    from cotembed._pipeline import decode_image, resolve_max_pixels

    name = str(source) if isinstance(source, (str, os.PathLike)) else "image"
    try:
        fh: Any = open(source, "rb") if isinstance(source, (str, os.PathLike)) else io.BytesIO(source)
    except OSError as exc:
        raise ValueError(f"cannot read {name}: {exc.strerror or exc}") from exc
    with fh:
        image = decode_image(fh, name=name, min_side=px, max_side=px, max_pixels=resolve_max_pixels(max_pixels))
    encoded = []
    for fmt, mime, options in (("PNG", "image/png", {"optimize": True}), ("JPEG", "image/jpeg", {"quality": 82})):
        buf = io.BytesIO()
        image.save(buf, format=fmt, **options)
        encoded.append((len(buf.getvalue()), mime, buf.getvalue()))
    _, mime, data = min(encoded)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _input_view(data: EmbeddingSet, row: int, px: int, max_pixels: int | None) -> dict[str, Any]:
    """What the page shows for one input: a thumbnail for an image, the text for a text."""
    view: dict[str, Any] = {"input": data.sources[row], "kind": None, "text": None, "thumbnail": None, "thumbnail_error": None}
    sample = data.samples[row] if data.samples else None
    if sample is None:
        return view
    view["kind"] = sample.kind
    if sample.kind == "text":
        view["text"] = sample.text
    elif sample.path is not None or sample.data is not None:
        try:
            view["thumbnail"] = thumbnail_uri(sample.path if sample.path is not None else sample.data, px, max_pixels)
        except ValueError as exc:  # the input was encoded before, so this is rare: the file changed since
            view["thumbnail_error"] = str(exc)
    return view


# ---------------------------------------------------------------- the section
def report_section(report: EvalReport, scorer: Scorer, data: EmbeddingSet, *, max_examples: int = DEFAULT_MAX_PER_METHOD,
                   seed: int = 0, thumb_px: int = DEFAULT_THUMB_PX, max_pixels: int | None = None) -> dict[str, Any]:
    """Everything the page shows for one evaluation, as JSON-able data (no model call).

    ``scorer`` must cover the report's methods; when it also has the option prompts
    (any CoT-style method) baseline mistakes are explained per question too.
    ``max_pixels``: the pixel cap the inputs were encoded under (thumbnails use the same).
    """
    from cotembed.reporting._text import _prompt_label

    if not 8 <= thumb_px <= 512:
        raise InputError(f"thumbnail size must be between 8 and 512 px, got {thumb_px}")
    methods = list(report.methods)
    sample = misclassified_examples(scorer, data, methods, max_examples, seed)
    return {
        "eval": report.to_dict(),
        "methods_info": {
            m: {"description": get_method(m).description, "prompts": _prompt_label(m, report.methods[m].prompts),
                "seeds": len(getattr(report.methods[m], "runs", {})) or None}
            for m in methods
        },
        "groups": [{"name": g.name, "prompt": g.prompt, "options": list(g.options), "weight": g.weight} for g in scorer.system.groups],
        "question_chance": question_chance(scorer.compiled, data),
        "examples": sample.to_dict(),
        "inputs": {str(row): _input_view(data, row, thumb_px, max_pixels) for row in sample.rows},
    }


# -------------------------------------------------------------------- curve
def load_curve(path: str | Path) -> dict[str, Any]:
    """A curve JSON written by ``cotembed curve --output``; every problem is named with its field."""
    path = Path(path)
    try:
        curve = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"--curve {path}: cannot read ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"--curve {path}: not a JSON file ({exc})") from exc
    problems = curve_problems(curve)
    if problems:
        raise InputError(f"--curve {path}: not a curve written by `cotembed curve` ({'; '.join(problems)})")
    return cast(dict[str, Any], curve)  # curve_problems checked it is an object


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def curve_problems(curve: Any) -> list[str]:
    """What is missing or wrong in a curve dict (empty when it can be drawn)."""
    if not isinstance(curve, dict):
        return [f"expected an object, got {type(curve).__name__}"]
    problems = []
    for key in ("chance",):
        if not _finite(curve.get(key)):
            problems.append(f"{key} must be a finite number, got {curve.get(key)!r}")
    baseline = curve.get("baseline")
    if not isinstance(baseline, dict) or not _finite(baseline.get("accuracy")) or not _finite(baseline.get("text_prompts")):
        problems.append("baseline must have a finite accuracy and text_prompts")
    for key in ("method", "model"):
        if not isinstance(curve.get(key), str):
            problems.append(f"{key} must be a string")
    if not isinstance(curve.get("system"), dict):
        problems.append("system must be an object")
    points = curve.get("points")
    if not isinstance(points, list) or not points:
        problems.append("points must be a non-empty list")
        return problems
    for i, point in enumerate(points):
        if not isinstance(point, dict):
            problems.append(f"points[{i}] must be an object")
            continue
        for key in ("k", "mean", "std", "min", "max", "prompts_mean"):
            if not _finite(point.get(key)):
                problems.append(f"points[{i}].{key} must be a finite number, got {point.get(key)!r}")
    return problems


def curve_svg(curve: Mapping[str, Any], width: int = 640, height: int = 320) -> Markup:
    """Accuracy vs number of questions k: min-max band, mean ± std, baseline and chance lines; Q on top."""
    points = sorted(curve["points"], key=lambda p: p["k"])
    left, right, top, bottom = 52, 18, 40, 44
    ks = [p["k"] for p in points]
    k_lo, k_hi = min(ks), max(ks)
    span = max(k_hi - k_lo, 1)

    def x(k: float) -> float:
        return left + (k - k_lo) / span * (width - left - right) if k_hi > k_lo else (left + width - right) / 2

    def y(v: float) -> float:
        return top + (1 - v) * (height - top - bottom)

    band = [f"{x(p['k']):.1f},{y(p['max']):.1f}" for p in points] + [f"{x(p['k']):.1f},{y(p['min']):.1f}" for p in reversed(points)]
    reference_lines = []
    # Baseline labelled at the right above its line, chance at the left below it: close values never overlap.
    for value, cls, label, tx, anchor, dy in (
            (curve["baseline"]["accuracy"], "base", f"baseline {pct(curve['baseline']['accuracy'])}", width - right - 4, "end", -5),
            (curve["chance"], "chance", f"chance {pct(curve['chance'])}", left + 4, "start", 13)):
        ty = min(y(value) + dy, height - bottom - 2) if dy > 0 else max(y(value) + dy, top + 10)
        reference_lines.append({"y": y(value), "cls": cls, "label": label, "tx": tx, "ty": ty, "anchor": anchor})
    drawn = [{**p, "x": x(p["k"]), "y": y(p["mean"]), "y_low": y(max(0.0, p["mean"] - p["std"])), "y_high": y(min(1.0, p["mean"] + p["std"]))}
             for p in points]
    step = max(1, math.ceil(len(points) / 16))  # at most ~16 tick labels, however many groups
    return _render("curve.svg.j2", width=width, height=height, left=left, right=right, top=top, bottom=bottom,
                   ticks=[{"value": t, "y": y(t)} for t in (0, 0.25, 0.5, 0.75, 1.0)], band=" ".join(band),
                   reference_lines=reference_lines, points=drawn, labelled=drawn[::step],
                   mean_line=" ".join(f"{p['x']:.1f},{p['y']:.1f}" for p in drawn))


# ----------------------------------------------------------------- heatmap
def heatmap_svg(classes: Sequence[str], matrix: Sequence[Sequence[int]], label: str = "") -> Markup:
    """Rows: true class; columns: predicted; colour: share of the row (blue right, red wrong); counts in cells."""
    m = np.asarray(matrix, dtype=np.int64)
    n = len(classes)
    cell = 24 if n <= 12 else 18 if n <= 30 else 14 if n <= 45 else 11
    names = [c if len(c) <= 22 else c[:21] + "…" for c in classes]
    pad = min(170, 8 + 7 * max((len(c) for c in names), default=4))
    size = n * cell
    share = row_shares(m)
    font = max(8, min(12, cell - 6))
    labels = [{"name": classes[i], "short": name, "x": pad + i * cell + cell / 2 + font / 3, "y": pad + i * cell + cell / 2 + font / 3}
              for i, name in enumerate(names)]
    cells = []
    for i, j in zip(*np.nonzero(m)):
        f = float(share[i, j])
        cells.append({"true": classes[i], "predicted": classes[j], "count": int(m[i, j]), "share": f, "alpha": 0.12 + 0.88 * f,
                      "colour": "31,119,180" if i == j else "214,39,40", "x": pad + j * cell, "y": pad + i * cell})
    return _render("heatmap.svg.j2", width=pad + size + 8, height=pad + size + 8, label=label, font=font, pad=pad, size=size, cell=cell,
                   grid=[pad + i * cell for i in range(0, n + 1, 5 if n > 10 else 1)], labels=labels, cells=cells, show_counts=cell >= 14)


def _heatmap_view(result: Mapping[str, Any], method: str) -> dict[str, Any] | None:
    """The drawn part of one method's confusion matrix (None when the report lists only the largest confusions)."""
    confusion = result.get("confusion")
    if not confusion:
        return None
    matrix = np.asarray(confusion["matrix"], dtype=np.int64)
    keep = heatmap_classes(matrix)
    svg = heatmap_svg([confusion["classes"][k] for k in keep], matrix[np.ix_(keep, keep)], method)
    return {"svg": svg, "classes": len(matrix), "shown": len(keep)}


# ------------------------------------------------------------------ render
CSS = (Path(__file__).parent / "templates" / "report.css").read_text(encoding="utf-8")
SORT_JS = (Path(__file__).parent / "templates" / "sort.js").read_text(encoding="utf-8")

SIZE_MARK = "\x00size\x00"

SECTION_PARTS: tuple[str, ...] = ("overview", "methods", "classes", "heatmaps", "questions", "examples")
"""The blocks of one evaluation, in page order: macros of ``templates/section.html.j2``; a new block is one macro there and its name here."""


def _with_thumb_classes(sections: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """One CSS class per distinct thumbnail, so an input shown by several methods (or models) is embedded once."""
    classes: dict[str, str] = {}
    prepared = []
    for section in sections:
        views = {}
        for row, view in section["inputs"].items():
            uri = view.get("thumbnail")
            views[row] = {**view, "css": classes.setdefault(uri, f"t{len(classes)}")} if uri else view
        prepared.append({**section, "inputs": views})
    css = "\n".join(f".{name}{{background-image:url({uri})}}" for uri, name in classes.items())
    return prepared, css


def _section_view(section: Mapping[str, Any]) -> dict[str, Any]:
    """A section with what its templates draw but the JSON does not hold: heatmaps, the best acc@1, the class order."""
    methods = section["eval"]["methods"]
    return {**section,
            "heatmaps": {name: _heatmap_view(r, name) for name, r in methods.items()},
            "best_acc1": max((r["acc1"] for r in methods.values() if r["acc1"] is not None), default=None),
            "class_names": sorted({c for r in methods.values() for c in r["per_class"]}),
            "probability_view": probability_view(section), "decisions_view": decisions_view(section)}


def render_report(sections: Sequence[Mapping[str, Any]], curve: Mapping[str, Any] | None = None, title: str | None = None) -> str:
    """The whole page as one string (the file's size appears in its footer)."""
    if not sections:
        raise InputError("a report needs at least one evaluation")
    sections, thumb_css = _with_thumb_classes(sections)
    first = sections[0]["eval"]
    title = title or f"cotembed report: {first['system'].get('name') or 'system'} on {', '.join(s['eval']['model'] for s in sections)}"
    nav = []
    for i, section in enumerate(sections):
        sid = f"m{i}"
        prefix = f"{section['eval']['model']}: " if len(sections) > 1 else ""
        nav += [(f"{sid}-methods", f"{prefix}methods"), (f"{sid}-classes", "per class"), (f"{sid}-confusion", "confusion"),
                (f"{sid}-questions", "questions"), (f"{sid}-examples", "misclassified")]
        nav += [(f"{sid}-probabilities", "probabilities")] if section.get("probability_figures") else []
        nav += [(f"{sid}-decisions", "sets and abstention")] if section.get("decisions") else []
    if curve is not None:
        nav.append(("curve", "test-time-compute curve"))
    page = _render("page.html.j2", title=title, nav=nav, sections=[_section_view(s) for s in sections], section_parts=SECTION_PARTS,
                   curve=curve, curve_svg=curve_svg(curve) if curve is not None else None,
                   evaluated_hashes=[h for s in sections if (h := s["eval"]["system"].get("hash"))],
                   csp=Markup(CSP), css=Markup(CSS), thumb_css=Markup(thumb_css), sort_js=Markup(SORT_JS), version=__version__,
                   size_mark=Markup(SIZE_MARK))
    return _with_own_size("<!DOCTYPE html>\n" + str(page) + "\n")


def _with_own_size(page: str) -> str:
    """Write the file's own size into its footer (a fixed point: the digits count too)."""
    size = len(page.encode("utf-8"))
    for _ in range(10):
        text = page.replace(SIZE_MARK, f"{size:,}")
        actual = len(text.encode("utf-8"))
        if actual == size:
            return text
        size = actual
    return text


def write_report(path: str | Path, text: str) -> int:
    """Write the page atomically (a temporary file renamed into place); returns its size in bytes."""
    path = Path(path)
    data = text.encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
    except OSError as exc:
        raise InputError(f"--html {path}: cannot write the report ({exc.strerror or exc})") from exc
    return len(data)


__all__ = [
    "DEFAULT_THUMB_PX",
    "HEATMAP_MAX_CLASSES",
    "curve_problems",
    "curve_svg",
    "heatmap_svg",
    "load_curve",
    "render_report",
    "report_section",
    "thumbnail_uri",
    "write_report",
]
