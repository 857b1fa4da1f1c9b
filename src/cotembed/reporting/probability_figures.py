"""The report page's probability section: reliability diagrams and accuracy/coverage curves.

Renders the data :func:`cotembed.evaluation_probs.probability_figures` computed, as
PNGs embedded in the page (data URIs: the page stays self-contained).
"""

from __future__ import annotations

import base64
import html
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


def probability_section(section: Mapping[str, Any], sid: str) -> str:
    """HTML of the section's ``probability_figures`` (empty when the section has none)."""
    figures = section.get("probability_figures")
    if not figures:
        return ""
    mode, fit = html.escape(str(figures["probabilities"])), html.escape(str(figures["fit_score"]))
    parts = [f'<h3 id="{sid}-probabilities">Probabilities: reliability and abstention</h3>',
             f"<p>Reliability of the {mode} probabilities (accuracy per confidence bin; the diagonal is perfect "
             "calibration, ECE in the legend), and the accuracy of the inputs kept when those with the lowest "
             f"fit score ({fit}) are left out.</p>"]
    if figures["reliability"]:
        parts.append(f'<img style="max-width:100%;height:auto" alt="reliability diagrams" src="{png_uri(reliability_figure(figures["reliability"]))}">')
    if figures["coverage"]:
        parts.append(f'<img style="max-width:100%;height:auto" alt="accuracy against coverage" src="{png_uri(coverage_figure(figures["coverage"]))}">')
    return "".join(parts)


__all__ = ["png_uri", "probability_section"]
