"""The report page's probability section: reliability diagrams and accuracy/coverage curves.

Renders the data :func:`cotembed.evaluation.probabilities.probability_figures` computed, as
PNGs embedded in the page (data URIs: the page stays self-contained).
"""

from __future__ import annotations

import base64
import io
from typing import Any, Mapping

from cotembed.reporting.calibration import coverage_figure, reliability_figure
from cotembed.reporting.plots import DPI, pyplot


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


__all__ = ["png_uri", "probability_view"]
