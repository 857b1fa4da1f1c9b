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
examples), built by :func:`report_section`; like the plots, it only presents.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, cast

import numpy as np

from cotembed import __version__
from cotembed._io import atomic_write
from cotembed.embeddings import EmbeddingSet
from cotembed.errors import InputError
from cotembed.evaluate import EvalReport
from cotembed.misclassified import DEFAULT_MAX_PER_METHOD, misclassified_examples
from cotembed.reporting.text import neutralise
from cotembed.scoring import Scorer, get_method

DEFAULT_THUMB_PX = 96
HEATMAP_MAX_CLASSES = 60
"""Above this many classes the heatmap keeps the classes with the most confusions (rows and columns)."""
HEATMAP_FOCUS_CLASSES = 40
TEXT_PREVIEW_CHARS = 280
MAX_ERRORS_SHOWN = 50
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
"""No fetch of any kind: the page can only use what is inside the file."""


def esc(value: Any) -> str:
    """HTML-escaped, with control and bidi-control characters shown as escapes (no name can reorder the page)."""
    return html.escape(neutralise(str(value), keep="\n\t"), quote=True)


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


# ------------------------------------------------------------------ thumbnails
def thumbnail_uri(source: Any, px: int = DEFAULT_THUMB_PX, max_pixels: int | None = None) -> str:
    """A ``data:`` URI of the image (a path, or an object with ``read_bytes()``) fitted in px x px.

    Decoded with the pipeline's bounded decoder (pixel cap: ``max_pixels``, else the
    pipeline's; JPEG draft mode), then stored as PNG or JPEG, whichever is smaller:
    drawings compress better as PNG, photos as JPEG. Raises ``ValueError`` naming the file when it cannot be read.
    """
    from cotembed.pipeline import decode_image, resolve_max_pixels

    name = str(source)
    try:
        fh: Any = open(source, "rb") if isinstance(source, (str, os.PathLike)) else io.BytesIO(source.read_bytes())
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
    elif sample.path is not None:
        try:
            view["thumbnail"] = thumbnail_uri(sample.path, px, max_pixels)
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
    from cotembed.reporting.text import _prompt_label

    if not 8 <= thumb_px <= 512:
        raise InputError(f"thumbnail size must be between 8 and 512 px, got {thumb_px}")
    methods = list(report.methods)
    sample = misclassified_examples(scorer, data, methods, max_examples, seed)
    compiled = scorer.compiled
    support = np.bincount(data.label_indices(compiled.class_names), minlength=compiled.n_classes).astype(np.float64)
    accepted = compiled.rule_matrix > 0
    chance: dict[str, float | None] = {}
    for g, name in enumerate(compiled.group_names):
        block = accepted[compiled.offsets[g] : compiled.offsets[g + 1]]
        share = block.sum(axis=0) / block.shape[0]  # a random answer fits class n with this probability
        chance[name] = float(share @ support / support.sum()) if support.sum() else None
    return {
        "eval": report.to_dict(),
        "methods_info": {
            m: {"description": get_method(m).description, "prompts": _prompt_label(m, report.methods[m].prompts),
                "seeds": len(getattr(report.methods[m], "runs", {})) or None}
            for m in methods
        },
        "groups": [{"name": g.name, "prompt": g.prompt, "options": list(g.options), "weight": g.weight} for g in scorer.system.groups],
        "question_chance": chance,
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


def curve_svg(curve: Mapping[str, Any], width: int = 640, height: int = 320) -> str:
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

    out = [f'<svg class="curve" viewBox="0 0 {width} {height}" role="img" aria-label="accuracy against number of questions">']
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{100 * tick:.0f}%</text>')
    band = [f"{x(p['k']):.1f},{y(p['max']):.1f}" for p in points] + [f"{x(p['k']):.1f},{y(p['min']):.1f}" for p in reversed(points)]
    out.append(f'<polygon points="{" ".join(band)}" class="band"/>')
    # Baseline labelled at the right above its line, chance at the left below it: close values never overlap.
    for value, cls, label, tx, anchor, dy in (
            (curve["baseline"]["accuracy"], "base", f"baseline {pct(curve['baseline']['accuracy'])}", width - right - 4, "end", -5),
            (curve["chance"], "chance", f"chance {pct(curve['chance'])}", left + 4, "start", 13)):
        ty = min(y(value) + dy, height - bottom - 2) if dy > 0 else max(y(value) + dy, top + 10)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" class="{cls}"/>'
                   f'<text x="{tx}" y="{ty:.1f}" text-anchor="{anchor}" class="{cls}-label">{esc(label)}</text>')
    for p in points:
        cx = x(p["k"])
        lo, hi = max(0.0, p["mean"] - p["std"]), min(1.0, p["mean"] + p["std"])
        out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(lo):.1f}" y2="{y(hi):.1f}" class="err"/>')
    line = " ".join(f"{x(p['k']):.1f},{y(p['mean']):.1f}" for p in points)
    out.append(f'<polyline points="{line}" class="mean"/>')
    for p in points:
        tip = (f"k={p['k']}: mean {pct(p['mean'])} ± {100 * p['std']:.1f}, min {pct(p['min'])}, max {pct(p['max'])}, "
               f"Q≈{p['prompts_mean']:.0f}")
        out.append(f'<circle cx="{x(p["k"]):.1f}" cy="{y(p["mean"]):.1f}" r="4" class="dot"><title>{esc(tip)}</title></circle>')
    step = max(1, math.ceil(len(points) / 16))  # at most ~16 tick labels, however many groups
    for p in points[::step]:
        cx = x(p["k"])
        out.append(f'<text x="{cx:.1f}" y="{height - bottom + 18}" text-anchor="middle">{p["k"]}</text>'
                   f'<text x="{cx:.1f}" y="{top - 10}" text-anchor="middle" class="q">{p["prompts_mean"]:.0f}</text>')
    out.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 6}" text-anchor="middle">questions (groups) k</text>'
               f'<text x="{(left + width - right) / 2:.0f}" y="{14}" text-anchor="middle" class="q">text prompts Q (mean)</text>')
    out.append("</svg>")
    return "".join(out)


# ----------------------------------------------------------------- heatmap
def heatmap_classes(matrix: np.ndarray, limit: int = HEATMAP_MAX_CLASSES, focus: int = HEATMAP_FOCUS_CLASSES) -> np.ndarray:
    """Indices of the classes drawn: all of them up to ``limit``, else the ``focus`` most confused (in class order)."""
    n = len(matrix)
    if n <= limit:
        return np.arange(n)
    off = matrix.astype(np.float64).copy()
    np.fill_diagonal(off, 0)
    involvement = off.sum(axis=0) + off.sum(axis=1)
    return np.sort(np.argsort(-involvement, kind="stable")[:focus])


def heatmap_svg(classes: Sequence[str], matrix: Sequence[Sequence[int]], label: str = "") -> str:
    """Rows: true class; columns: predicted; colour: share of the row (blue right, red wrong); counts in cells."""
    m = np.asarray(matrix, dtype=np.int64)
    n = len(classes)
    cell = 24 if n <= 12 else 18 if n <= 30 else 14 if n <= 45 else 11
    names = [c if len(c) <= 22 else c[:21] + "…" for c in classes]
    pad = min(170, 8 + 7 * max((len(c) for c in names), default=4))
    size = n * cell
    width, height = pad + size + 8, pad + size + 8
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros(m.shape), where=rows > 0)
    font = max(8, min(12, cell - 6))
    out = [f'<svg class="heat" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{esc(f"confusion matrix {label}")}" style="font-size:{font}px">',
           f'<rect x="{pad}" y="{pad}" width="{size}" height="{size}" class="heat-bg"/>']
    for i in range(0, n + 1, 5 if n > 10 else 1):
        out.append(f'<line x1="{pad}" x2="{pad + size}" y1="{pad + i * cell}" y2="{pad + i * cell}" class="heat-grid"/>'
                   f'<line y1="{pad}" y2="{pad + size}" x1="{pad + i * cell}" x2="{pad + i * cell}" class="heat-grid"/>')
    for i, name in enumerate(names):
        cy = pad + i * cell + cell / 2 + font / 3
        cx = pad + i * cell + cell / 2 + font / 3
        out.append(f'<text x="{pad - 4}" y="{cy:.1f}" text-anchor="end"><title>{esc(classes[i])}</title>{esc(name)}</text>'
                   f'<text transform="translate({cx:.1f},{pad - 4}) rotate(-90)"><title>{esc(classes[i])}</title>{esc(name)}</text>')
    show_counts = cell >= 14
    for i, j in zip(*np.nonzero(m)):
        f = float(share[i, j])
        alpha = 0.12 + 0.88 * f
        colour = "31,119,180" if i == j else "214,39,40"
        tip = f"true {classes[i]} → predicted {classes[j]}: {m[i, j]} ({pct(f)} of {classes[i]})"
        x0, y0 = pad + j * cell, pad + i * cell
        out.append(f'<g><title>{esc(tip)}</title><rect x="{x0}" y="{y0}" width="{cell}" height="{cell}" fill="rgba({colour},{alpha:.2f})"/>')
        if show_counts:
            ink = "#fff" if alpha > 0.55 else "#222"
            out.append(f'<text x="{x0 + cell / 2:.1f}" y="{y0 + cell / 2 + font / 3:.1f}" text-anchor="middle" fill="{ink}">{m[i, j]}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


# ------------------------------------------------------------------ render
CSS = """
:root{--ink:#1d2329;--muted:#5b6670;--line:#d9dee3;--bg:#fff;--soft:#f4f6f8;--ok:#1f77b4;--bad:#d62728;--good:#2a9d55}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:var(--bg)}
main{max-width:1180px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:1.5rem;margin:.2em 0 .3em}h2{font-size:1.25rem;margin:1.6em 0 .5em;padding-top:.4em;border-top:2px solid var(--line)}
h3{font-size:1.05rem;margin:1.2em 0 .4em}
p,li{max-width:80ch}.muted,.small{color:var(--muted)}.small{font-size:.85em}
code{font:.85em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--soft);padding:0 .25em;border-radius:3px;word-break:break-all}
.facts{display:flex;flex-wrap:wrap;gap:6px 18px;margin:.4em 0 1em;padding:0;list-style:none}.facts li{max-width:100%;overflow-wrap:anywhere}
.facts b{font-weight:600}
nav ul{display:flex;flex-wrap:wrap;gap:4px 14px;padding:0;margin:0;list-style:none}nav a{color:var(--ok)}
.scroll{overflow-x:auto;max-width:100%;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;margin:.3em 0 1em}th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600;white-space:nowrap}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:after{content:" ⇅";color:#aab}
table.sortable th[aria-sort=ascending]:after{content:" ▲";color:var(--ink)}table.sortable th[aria-sort=descending]:after{content:" ▼";color:var(--ink)}
tr.best td{font-weight:600}tr.best td .desc{font-weight:400}
.bar{position:relative;min-width:90px}.bar span{position:relative;z-index:1}
.bar i{position:absolute;left:0;top:3px;bottom:3px;background:rgba(31,119,180,.18);border-radius:2px}
.bar i.chance{background:none;border-right:2px dotted var(--muted);border-radius:0}
details{margin:.5em 0}summary{cursor:pointer;font-weight:600;padding:.2em 0}
svg text{fill:var(--ink)}svg.heat{display:block}.heat-bg{fill:#fbfcfd;stroke:var(--line)}.heat-grid{stroke:#e8ecef;stroke-width:1}
svg.curve{width:100%;max-width:680px;height:auto;display:block;font-size:12px}
.curve .grid{stroke:#e3e7ea}.curve .band{fill:rgba(31,119,180,.16)}.curve .mean{fill:none;stroke:var(--ok);stroke-width:2.5}
.curve .dot{fill:var(--ok)}.curve .err{stroke:var(--ok);stroke-width:1.5}.curve .base{stroke:#555;stroke-dasharray:6 4;stroke-width:1.5}
.curve .chance{stroke:#999;stroke-dasharray:2 3}.curve .q{fill:var(--muted)}.curve .chance-label{fill:#888}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:.85em;color:var(--muted);margin:.2em 0 .6em}
.sw{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-1px;margin-right:4px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(430px,100%),1fr));gap:12px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px;background:#fff;min-width:0}
.card-head{display:flex;gap:10px;align-items:flex-start;margin-bottom:6px}.meta{min-width:0}
.thumb{flex:0 0 auto;width:96px;height:96px;background:var(--soft) center/contain no-repeat;border-radius:4px;image-rendering:pixelated}
.thumb.missing{display:flex;align-items:center;justify-content:center;font-size:.75em;color:var(--muted);text-align:center;padding:4px}
.textinput{margin:0 0 6px;padding:6px 8px;background:var(--soft);border-radius:4px;font-size:.9em;white-space:pre-wrap;overflow-wrap:anywhere}
.lab{display:inline-block;width:7.4em;font-size:.78em;text-transform:uppercase;letter-spacing:.03em;color:var(--muted)}
.cls{overflow-wrap:anywhere}.src{font-size:.8em;color:var(--muted);overflow-wrap:anywhere}
table.qs{width:100%;table-layout:fixed;font-size:.86em;margin:0}table.qs td,table.qs th{padding:3px 6px;white-space:normal}
table.qs td{overflow-wrap:break-word}table.qs col.g{width:21%}.p{white-space:nowrap;color:var(--muted);font-size:.9em}
tr.v-right td:first-child{border-left:4px solid var(--good)}tr.v-misled td:first-child{border-left:4px solid var(--bad)}
tr.v-neither td:first-child{border-left:4px solid #e0b000}
.mark{font-weight:700}.v-right .mark{color:var(--good)}.v-misled .mark{color:var(--bad)}.v-neither .mark{color:#a07c00}
.note{background:#fff8e1;border:1px solid #f0d890;border-radius:6px;padding:6px 10px;max-width:80ch}
footer{margin-top:2.5em;padding-top:.8em;border-top:1px solid var(--line);color:var(--muted);font-size:.85em}
@media (max-width:600px){main{padding:10px 10px 30px}body{font-size:14px}h1{font-size:1.25rem}th,td{padding:3px 6px}
.thumb{width:72px;height:72px}.facts{gap:2px 12px}.desc{display:none}}
"""

SORT_JS = """
(function(){
  function key(cell){var v=cell.getAttribute('data-v');return v===null?cell.textContent.trim().toLowerCase():parseFloat(v);}
  var tables=document.querySelectorAll('table.sortable');
  for(var t=0;t<tables.length;t++){(function(table){
    var heads=table.tHead.rows[0].cells;
    for(var i=0;i<heads.length;i++){(function(th,col){
      th.tabIndex=0;th.setAttribute('aria-sort','none');
      function sort(){
        var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows),asc=th.getAttribute('aria-sort')!=='ascending';
        rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);return (x<y?-1:x>y?1:0)*(asc?1:-1);});
        for(var h=0;h<heads.length;h++){heads[h].setAttribute('aria-sort','none');}
        th.setAttribute('aria-sort',asc?'ascending':'descending');
        for(var r=0;r<rows.length;r++){body.appendChild(rows[r]);}
      }
      th.addEventListener('click',sort);
      th.addEventListener('keydown',function(e){if(e.key==='Enter'||e.key===' '){e.preventDefault();sort();}});
    })(heads[i],i);}
  })(tables[t]);}
})();
"""

SIZE_MARK = "\x00size\x00"


def _num_cell(value: float | None, text: str | None = None, bar: bool = False, chance: float | None = None) -> str:
    shown = text if text is not None else pct(value)
    v = "-1" if value is None else f"{value:.6g}"
    if not bar or value is None:
        return f'<td class="num" data-v="{v}">{esc(shown)}</td>'
    marker = f'<i class="chance" style="width:{100 * chance:.1f}%"></i>' if chance is not None else ""
    return f'<td class="num bar" data-v="{v}"><i style="width:{100 * value:.1f}%"></i>{marker}<span>{esc(shown)}</span></td>'


def _metric_text(result: Mapping[str, Any], metric: str) -> str:
    value = result.get(metric)
    text = (f"{value:.3f}" if metric == "ece" else pct(value)) if value is not None else "–"
    spread = result.get("spread", {}).get(metric)
    if spread and result.get("n_seeds", 1) > 1:
        text += f" ± {spread['std']:.3f}" if metric == "ece" else f" ± {100 * spread['std']:.1f}"
    return text


def _overview(section: Mapping[str, Any], sid: str) -> str:
    ev = section["eval"]
    system = ev["system"]
    facts = [
        ("system", f"{system.get('name') or '(unnamed)'} [{system.get('hash', '')}]"),
        ("file", system.get("path")),
        ("model", ev["model"]),
        ("temperature", f"{ev['temperature']:g}"),
        ("inputs", f"{ev['n_inputs']:,}"),
        ("classes", str(ev["n_classes"])),
        ("chance", pct(ev["chance"])),
        ("failed inputs", str(len(ev["errors"])) if ev["errors"] else None),
        ("skipped (unknown label)", str(len(ev["skipped_unknown_labels"])) if ev["skipped_unknown_labels"] else None),
    ]
    items = "".join(f"<li><b>{esc(k)}</b> {esc(v)}</li>" for k, v in facts if v)
    return f'<ul class="facts" id="{sid}-facts">{items}</ul>'


def _methods_table(section: Mapping[str, Any], sid: str) -> str:
    ev, info = section["eval"], section["methods_info"]
    best = max((r["acc1"] for r in ev["methods"].values() if r["acc1"] is not None), default=None)
    rows = []
    for name, r in ev["methods"].items():
        meta = info.get(name, {})
        seeds = f" (mean of {meta['seeds']} seeds)" if meta.get("seeds") and meta["seeds"] > 1 else ""
        cls = ' class="best"' if best is not None and r["acc1"] == best else ""
        rows.append(
            f"<tr{cls}><td><b>{esc(name)}</b>{esc(seeds)}<div class='small desc'>{esc(meta.get('description', ''))}</div></td>"
            + _num_cell(r["acc1"], _metric_text(r, "acc1"), bar=True, chance=ev["chance"])
            + _num_cell(r["acc5"], _metric_text(r, "acc5"))
            + _num_cell(r["mean_per_class_recall"], _metric_text(r, "mean_per_class_recall"))
            + _num_cell(r["ece"], _metric_text(r, "ece"))
            + f'<td class="num" data-v="{r["text_prompts"]}">{esc(meta.get("prompts", r["text_prompts"]))}</td>'
            + f'<td class="num" data-v="{r["correct"]}">{r["correct"]:g} / {r["total"]:,}</td></tr>'
        )
    head = ("<tr><th>method</th><th class='num'>acc@1</th><th class='num'>acc@5</th><th class='num'>mean per-class recall</th>"
            "<th class='num'>ECE</th><th class='num'>text prompts</th><th class='num'>correct</th></tr>")
    return (f'<h3 id="{sid}-methods">Methods</h3><div class="scroll"><table class="sortable methods"><thead>{head}</thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>'
            f'<p class="small">The bar is acc@1; its dotted mark is chance ({esc(pct(ev["chance"]))}). '
            "ECE: expected calibration error of the top-1 probability (lower is better).</p>")


def _per_class_table(section: Mapping[str, Any], sid: str) -> str:
    ev = section["eval"]
    methods = list(ev["methods"])
    classes = sorted({c for r in ev["methods"].values() for c in r["per_class"]})
    first = ev["methods"][methods[0]]["per_class"] if methods else {}
    head = "<tr><th>class</th><th class='num'>inputs</th>" + "".join(f"<th class='num'>{esc(m)}</th>" for m in methods) + "</tr>"
    rows = []
    for c in classes:
        total = first.get(c, {}).get("total")
        cells = "".join(_num_cell(ev["methods"][m]["per_class"].get(c, {}).get("accuracy"), bar=True) for m in methods)
        rows.append(f"<tr><td>{esc(c)}</td><td class='num' data-v='{total or 0}'>{esc(total if total is not None else '–')}</td>{cells}</tr>")
    return (f'<h3 id="{sid}-classes">Per-class accuracy</h3><p class="small">Recall of each class (share of its inputs predicted as it). '
            f'Click a column to sort.</p><div class="scroll"><table class="sortable classes"><thead>{head}</thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _heatmaps(section: Mapping[str, Any], sid: str) -> str:
    ev = section["eval"]
    parts = [f'<h3 id="{sid}-confusion">Confusion matrices</h3>'
             '<div class="legend"><span><span class="sw" style="background:rgba(31,119,180,.9)"></span>right (diagonal)</span>'
             '<span><span class="sw" style="background:rgba(214,39,40,.9)"></span>wrong</span>'
             '<span>rows: true class; columns: predicted; shade: share of the row; hover a cell for details</span></div>']
    for i, (name, r) in enumerate(ev["methods"].items()):
        confusion = r.get("confusion")
        body = []
        if confusion:
            matrix = np.asarray(confusion["matrix"], dtype=np.int64)
            keep = heatmap_classes(matrix)
            note = ""
            if len(keep) < len(matrix):
                note = (f'<p class="note">{len(matrix)} classes: showing the {len(keep)} involved in the most confusions '
                        "(the full matrix is in the JSON of <code>cotembed eval --format json</code>).</p>")
            if confusion.get("summed_over_seeds"):
                note += '<p class="small">Counts are summed over the seeds.</p>'
            body.append(note + '<div class="scroll">' + heatmap_svg([confusion["classes"][k] for k in keep], matrix[np.ix_(keep, keep)], name) + "</div>")
        else:
            body.append(f'<p class="note">{ev["n_classes"]} classes: too many to draw; the largest confusions are listed below.</p>')
        top = r.get("top_confusions", [])[:10]
        if top:
            rows = "".join(f"<tr><td>{esc(t['true'])}</td><td>{esc(t['predicted'])}</td><td class='num'>{t['count']:g}</td></tr>" for t in top)
            body.append("<div class='scroll'><table class='small'><thead><tr><th>true</th><th>predicted as</th><th class='num'>inputs</th>"
                        f"</tr></thead><tbody>{rows}</tbody></table></div>")
        else:
            body.append("<p class='small'>No confusions.</p>")
        acc = pct(r.get("acc1"))
        parts.append(f'<details{" open" if i == 0 else ""}><summary>{esc(name)} <span class="muted">acc@1 {esc(acc)}</span></summary>{"".join(body)}</details>')
    return "".join(parts)


def _questions(section: Mapping[str, Any], sid: str) -> str:
    ev = section["eval"]
    accuracy, chance = ev["question_accuracy"], section["question_chance"]
    if not accuracy:
        return ""
    rows = []
    for group in section["groups"]:
        name = group["name"]
        acc = accuracy.get(name)
        options = ", ".join(group["options"])
        rows.append(f"<tr><td><b>{esc(name)}</b><div class='small'>{esc(group['prompt'])}</div></td>"
                    f"<td class='num' data-v='{len(group['options'])}' title='{esc(options)}'>{len(group['options'])}</td>"
                    f"<td class='num' data-v='{group['weight']:g}'>{group['weight']:g}</td>"
                    + _num_cell(acc, bar=True, chance=chance.get(name))
                    + _num_cell(chance.get(name)) + "</tr>")
    head = "<tr><th>question</th><th class='num'>options</th><th class='num'>weight</th><th class='num'>accuracy</th><th class='num'>chance</th></tr>"
    missing = "" if any(v is not None for v in accuracy.values()) else "<p class='note'>No method of this evaluation asks the questions.</p>"
    return (f'<h3 id="{sid}-questions">Per-question accuracy</h3>'
            "<p class='small'>How often a question's most probable option is one the true class's rule accepts. "
            "Chance: the same for a uniformly random answer (dotted mark).</p>"
            f'{missing}<div class="scroll"><table class="sortable questions"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>')


def _short_source(source: str) -> str:
    parts = source.replace("\\", "/").split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else source


def _input_block(view: Mapping[str, Any] | None, source: str) -> str:
    if view and view.get("css"):
        return f'<div class="thumb {view["css"]}" role="img" aria-label="{esc(source)}"></div>'
    if view and view.get("text") is not None:
        return ""
    reason = (view or {}).get("thumbnail_error") or "no preview"
    return f'<div class="thumb missing" title="{esc(reason)}">{esc("no preview")}</div>'


def _example_card(m: Mapping[str, Any], view: Mapping[str, Any] | None) -> str:
    source = m["input"]
    text = (view or {}).get("text")
    preview = ""
    if text is not None:
        clipped = text if len(text) <= TEXT_PREVIEW_CHARS else text[: TEXT_PREVIEW_CHARS - 1] + "…"
        preview = f'<p class="textinput">{esc(clipped)}</p>'
    head = (f'<div class="card-head">{_input_block(view, source)}<div class="meta">'
            f'<div class="cls"><span class="lab">true</span>{esc(m["label"])} '
            f'<span class="small">p {m["true_probability"]:.2f} · rank {m["true_rank"]}</span></div>'
            f'<div class="cls"><span class="lab">predicted</span><b>{esc(m["predicted"])}</b> '
            f'<span class="small">p {m["predicted_probability"]:.2f}</span></div>'
            f'<div class="src" title="{esc(source)}">{esc(_short_source(source))}</div></div></div>')
    questions = m["questions"]
    if not questions:
        return f'<article class="card">{head}{preview}</article>'
    marks = {"right": "✓", "misled": "✗", "neither": "?"}
    rows = "".join(
        f'<tr class="v-{q["verdict"]}"><td>{esc(q["group"])}</td>'
        f'<td><span class="mark" title="{esc(q["verdict"])}">{marks[q["verdict"]]}</span> {esc(q["answer"])} '
        f'<span class="p">{q["probability"]:.2f}</span></td>'
        f'<td>{esc(" / ".join(q["true_options"]) or "–")} <span class="p">{q["true_probability"]:.2f}</span></td>'
        f'<td>{esc(" / ".join(q["predicted_options"]) or "–")} <span class="p">{q["predicted_probability"]:.2f}</span></td></tr>'
        for q in questions
    )
    table = ('<table class="qs"><colgroup><col class="g"><col><col><col></colgroup><thead><tr><th>question</th><th>answer</th>'
             f"<th>true expects</th><th>predicted expects</th></tr></thead><tbody>{rows}</tbody></table>")
    return f'<article class="card">{head}{preview}{table}</article>'


def _examples(section: Mapping[str, Any], sid: str) -> str:
    examples, views = section["examples"], section["inputs"]
    parts = [f'<h3 id="{sid}-examples">Misclassified inputs</h3>'
             f"<p class='small'>A seeded sample (seed {examples['seed']}) of at most {examples['max_per_method']} per method. "
             "For each question: the model's answer and its probability, and the options (with their total probability) "
             "that the true and the predicted class's rules accept. "
             "<span class='mark' style='color:var(--good)'>✓</span> the answer fits the true class; "
             "<span class='mark' style='color:var(--bad)'>✗</span> it fits only the predicted class; ? it fits neither.</p>"]
    for name, mm in examples["methods"].items():
        shown = mm["shown"]
        title = f"{name}: {mm['misclassified']:,} of {mm['total']:,} misclassified"
        if mm["misclassified"] > len(shown):
            title += f", showing {len(shown)}"
        seeds = section["methods_info"].get(name, {}).get("seeds")
        seed_note = (f"<p class='small'>Predictions of the first seed; the metrics above average {seeds} seeds.</p>"
                     if seeds and seeds > 1 else "")
        if not shown:
            parts.append(f"<details><summary>{esc(title)}</summary><p class='small'>Nothing to show.</p></details>")
            continue
        cards = "".join(_example_card(m, views.get(str(m["row"]))) for m in shown)
        parts.append(f'<details open><summary>{esc(title)}</summary>{seed_note}<div class="cards">{cards}</div></details>')
    return "".join(parts)


def _errors(section: Mapping[str, Any]) -> str:
    errors = section["eval"]["errors"]
    if not errors:
        return ""
    items = "".join(f"<li><code>{esc(e.get('source', ''))}</code>: {esc(e.get('error', ''))}</li>" for e in errors[:MAX_ERRORS_SHOWN])
    more = f"<p class='small'>and {len(errors) - MAX_ERRORS_SHOWN:,} more.</p>" if len(errors) > MAX_ERRORS_SHOWN else ""
    return f"<h3>Inputs that could not be used ({len(errors):,})</h3><ul class='small'>{items}</ul>{more}"


def _curve_section(curve: Mapping[str, Any], sections: Sequence[Mapping[str, Any]]) -> str:
    system = curve["system"]
    note = ""
    hashes = {s["eval"]["system"].get("hash") for s in sections}
    if system.get("hash") and hashes and system.get("hash") not in hashes:
        note = (f"<p class='note'>This curve was computed for system [{esc(system.get('hash'))}], "
                "not the system evaluated above.</p>")
    head = "<tr>" + "".join(f"<th class='num'>{h}</th>" for h in ("k", "subsets", "prompts Q", "mean", "± std", "min", "max")) + "</tr>"
    rows = "".join(
        f"<tr><td class='num'>{p['k']}</td><td class='num'>{esc(p.get('subsets', ''))}{esc('/' + str(p['of']) if 'of' in p else '')}</td>"
        f"<td class='num'>{p['prompts_mean']:.0f}</td><td class='num'>{pct(p['mean'])}</td><td class='num'>{100 * p['std']:.1f}</td>"
        f"<td class='num'>{pct(p['min'])}</td><td class='num'>{pct(p['max'])}</td></tr>"
        for p in sorted(curve["points"], key=lambda p: p["k"])
    )
    base = curve["baseline"]
    facts = (f"<ul class='facts'><li><b>system</b> {esc(system.get('name') or '(unnamed)')} [{esc(system.get('hash', ''))}]</li>"
             f"<li><b>model</b> {esc(curve['model'])}</li><li><b>method</b> {esc(curve['method'])}</li>"
             f"<li><b>inputs</b> {esc(curve.get('n_inputs', '–'))}</li><li><b>baseline</b> {pct(base['accuracy'])} "
             f"(N={esc(base['text_prompts'])})</li></ul>")
    legend = ('<div class="legend"><span><span class="sw" style="background:#1f77b4"></span>mean over subsets of k questions ± 1 std</span>'
              '<span><span class="sw" style="background:rgba(31,119,180,.25)"></span>min–max</span>'
              '<span>dashed: class-name baseline; dotted: chance</span></div>')
    return (f'<h2 id="curve">Test-time compute: accuracy as questions are added</h2>{facts}{note}{curve_svg(curve)}{legend}'
            f'<details><summary>the points</summary><div class="scroll"><table>'
            f'<thead>{head}</thead><tbody>{rows}</tbody></table></div></details>')


SECTION_PARTS: tuple[Callable[[Mapping[str, Any], str], str], ...] = (_overview, _methods_table, _per_class_table, _heatmaps, _questions, _examples)
"""The blocks of one evaluation, in page order; a new block is one function here."""


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


def render_report(sections: Sequence[Mapping[str, Any]], curve: Mapping[str, Any] | None = None, title: str | None = None) -> str:
    """The whole page as one string (the file's size appears in its footer)."""
    if not sections:
        raise InputError("a report needs at least one evaluation")
    sections, thumb_css = _with_thumb_classes(sections)
    first = sections[0]["eval"]
    title = title or f"cotembed report: {first['system'].get('name') or 'system'} on {', '.join(s['eval']['model'] for s in sections)}"
    nav, body = [], []
    for i, section in enumerate(sections):
        sid = f"m{i}"
        if len(sections) > 1:
            body.append(f'<h2 id="{sid}">Model {esc(section["eval"]["model"])}</h2>')
        else:
            body.append(f'<h2 id="{sid}">Evaluation</h2>')
        body.extend(part(section, sid) for part in SECTION_PARTS)
        body.append(_errors(section))
        prefix = f"{section['eval']['model']}: " if len(sections) > 1 else ""
        nav += [(f"{sid}-methods", f"{prefix}methods"), (f"{sid}-classes", "per class"), (f"{sid}-confusion", "confusion"),
                (f"{sid}-questions", "questions"), (f"{sid}-examples", "misclassified")]
    if curve is not None:
        body.append(_curve_section(curve, sections))
        nav.append(("curve", "test-time-compute curve"))
    links = "".join(f'<li><a href="#{esc(a)}">{esc(t)}</a></li>' for a, t in nav)
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}\n{thumb_css}</style></head><body><main>"
        f"<h1>{esc(title)}</h1><nav aria-label='contents'><ul>{links}</ul></nav>"
        + "".join(body)
        + f"<footer>Written by cotembed {esc(__version__)}. Self-contained: no network is needed to open this file "
        f"({SIZE_MARK} bytes).</footer></main><script>{SORT_JS}</script></body></html>\n"
    )
    return _with_own_size(page)


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
    "heatmap_classes",
    "heatmap_svg",
    "load_curve",
    "render_report",
    "report_section",
    "thumbnail_uri",
    "write_report",
]
