"""The report page's probability section: reliability diagrams, accuracy/coverage curves and
the decisions evaluated beside them (conformal sets, abstention, open set).

Renders the data :mod:`cotembed.evaluation._probabilities` computed, as PNGs embedded in the
page (data URIs: the page stays self-contained) and rows for its tables.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Mapping

from cotembed.reporting._calibration import coverage_figure, reliability_figure, set_size_figure
from cotembed.reporting._plots import DPI, pyplot


def png_uri(fig: Any) -> str:
    """The figure as a PNG data URI (the figure is freed)."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    finally:
        pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def probability_view(section: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the page's probability block shows (None when the section has no figures): the
    probability mode, the fit score, and each figure as (alt text, PNG data URI)."""
    figures = section.get("probability_figures")
    if not figures:
        return None
    images = []
    if figures["reliability"]:
        images.append(("reliability diagrams", png_uri(reliability_figure(figures["reliability"]))))
    if figures["coverage"]:
        images.append(("accuracy against coverage", png_uri(coverage_figure(figures["coverage"]))))
    return {"mode": str(figures["probabilities"]), "fit_score": str(figures["fit_score"]), "images": images}


def decisions_view(section: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the page's decisions block shows (None when ``eval`` evaluated none): per method, the
    conformal sets' coverage and sizes with a set-size histogram, abstention and the open set."""
    decisions = section.get("decisions") or {}
    conformal, abstention, open_set = (decisions.get(k) or {} for k in ("conformal", "abstention", "open_set"))
    if not (conformal or abstention or open_set):
        return None
    view: dict[str, Any] = {"conformal": conformal, "abstention": abstention, "open_set": open_set, "images": []}
    if conformal:
        view["images"].append(("conformal set sizes", png_uri(set_size_figure(conformal))))
    if open_set:
        curves = {f"{m} (open set, {o['n_unknown']} unknown)": o["curve"] for m, o in open_set.items()}
        view["images"].append(("open set: accuracy against coverage", png_uri(coverage_figure(curves))))
    return view


__all__ = ["decisions_view", "png_uri", "probability_view"]
