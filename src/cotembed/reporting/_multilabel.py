"""The multi-label report: per-class bars (PNG) and the HTML page of ``eval --multi-label``.

Presents the section :func:`cotembed.evaluation._probabilities.multilabel_section` computed:
per class its threshold, precision, recall, F1 and average precision, then micro F1 and mAP.
The page uses the single-label report's stylesheet, script and safety rules (autoescaped
templates, no fetch of any kind).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from markupsafe import Markup

from cotembed import __version__
from cotembed.reporting._plots import pyplot, save
from cotembed.reporting._probability_figures import png_uri

FIGURE_MAX_CLASSES = 60
"""Above this many classes the bars would be unreadable: the figure keeps those with the lowest AP (the ones to look at)."""


def _shown_classes(per_class: Mapping[str, Mapping[str, Any]]) -> list[str]:
    names = list(per_class)
    if len(names) <= FIGURE_MAX_CLASSES:
        return names
    ap = {n: per_class[n].get("ap") for n in names}
    worst = sorted(names, key=lambda n: (ap[n] is None, ap[n] if ap[n] is not None else 0.0))[:FIGURE_MAX_CLASSES]
    return [n for n in names if n in set(worst)]


def multilabel_figure(section: Mapping[str, Any], title: str = "") -> Any:
    """Per class: average precision and, where thresholds were in force, F1 (horizontal bars)."""
    plt = pyplot()
    per_class = section["per_class"]
    names = _shown_classes(per_class)
    series = [("AP", "ap", "tab:blue")] + ([("F1", "f1", "tab:orange")] if "micro_f1" in section else [])
    height = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(6.4, max(2.4, 0.14 * len(names) * len(series) + 1.2)), constrained_layout=True)
    for i, (label, key, colour) in enumerate(series):
        values = [per_class[n].get(key) for n in names]
        y = [row - 0.4 + height * (i + 0.5) for row in range(len(names))]
        ax.barh(y, [100 * v if v is not None else 0.0 for v in values], height=height * 0.95, color=colour, label=label)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_ylim(len(names) - 0.5, -0.5)  # first class on top, no empty margin
    ax.set_xlim(0, 100)
    ax.set_xlabel("%")
    ax.grid(True, axis="x", alpha=0.3)
    summary = f"mAP {100 * section['map']:.1f}%" if section.get("map") is not None else "mAP –"
    if section.get("micro_f1") is not None:
        summary += f", micro F1 {100 * section['micro_f1']:.1f}%"
    ax.legend(fontsize=7, ncol=len(series), loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_title(f"{title}\n{summary}" if title else summary, fontsize=9, loc="left")
    return fig


def plot_multilabel(section: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    return save(multilabel_figure(section, title), path)


def render_multilabel_report(payload: Mapping[str, Any], title: str | None = None) -> str:
    """The whole page of ``eval --multi-label`` (a payload with ``multi_label``, ``model``, ``system``, ``errors``)."""
    from cotembed.reporting._html import CSP, CSS, SIZE_MARK, SORT_JS, _render, _with_own_size

    section = payload["multi_label"]
    system = payload.get("system") or {}
    title = title or f"cotembed multi-label report: {system.get('name') or 'system'} on {payload.get('model', '')}"
    page = _render("multilabel.html.j2", title=title, payload=payload, section=section, system=system,
                   figure=png_uri(multilabel_figure(section)), csp=Markup(CSP), css=Markup(CSS), sort_js=Markup(SORT_JS),
                   version=__version__, size_mark=Markup(SIZE_MARK))
    return _with_own_size("<!DOCTYPE html>\n" + str(page) + "\n")


__all__ = ["FIGURE_MAX_CLASSES", "multilabel_figure", "plot_multilabel", "render_multilabel_report"]
