"""Calibration figures and tables: reliability diagrams, accuracy/coverage curves, before/after ECE.

Like every reporting module, these only present: they take the ``to_dict()`` data
computed in :mod:`cotembed.scoring._calibration` / :mod:`cotembed.scoring._openset`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from cotembed.reporting._plots import percent_axis, pyplot, save
from cotembed.reporting._text import table


def reliability_figure(diagrams: Mapping[str, Mapping[str, Any]], title: str = "") -> Any:
    """One panel per diagram (three to a row): accuracy per confidence bin against the diagonal, ECE in the legend."""
    plt = pyplot()
    cols = min(3, len(diagrams))
    rows = -(-len(diagrams) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.6 * rows), squeeze=False, constrained_layout=True)
    for ax in axes.ravel()[len(diagrams):]:
        ax.set_visible(False)
    for ax, (label, d) in zip(axes.ravel(), diagrams.items()):
        edges = d["edges"]
        centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
        width = edges[1] - edges[0]
        acc = [a if a is not None else 0.0 for a in d["accuracy"]]
        conf = [c if c is not None else 0.0 for c in d["confidence"]]
        ax.bar(centres, acc, width=width * 0.9, color="tab:blue", alpha=0.75, label=f"accuracy (ECE {d['ece']:.3f})")
        ax.bar(centres, conf, width=width * 0.9, fill=False, edgecolor="tab:red", linewidth=1.0, label="mean confidence")
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    for row in axes:
        row[0].set_ylabel("accuracy")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_reliability(diagrams: Mapping[str, Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    return save(reliability_figure(diagrams, title), path)


def coverage_figure(curves: Mapping[str, Mapping[str, Sequence[float]]], title: str = "") -> Any:
    """Accuracy of the accepted inputs against the share accepted, one line per curve."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for label, curve in curves.items():
        ax.plot([100 * c for c in curve["coverage"]], [100 * a for a in curve["accuracy"]], label=label, linewidth=1.4)
    percent_axis(ax)
    ax.set_xlabel("coverage: inputs accepted (%)")
    ax.set_ylabel("accuracy of the accepted (%)")
    ax.set_xlim(0, 101)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_coverage(curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path, title: str = "") -> Path:
    return save(coverage_figure(curves, title), path)


def set_size_figure(sections: Mapping[str, Mapping[str, Any]], title: str = "") -> Any:
    """How many inputs got a conformal set of each size, one bar series per method; coverage in the legend."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    width = 0.8 / max(len(sections), 1)
    for i, (label, c) in enumerate(sections.items()):
        counts = c["set_size_counts"]
        x = [size - 0.4 + width * (i + 0.5) for size in range(len(counts))]
        ax.bar(x, counts, width=width * 0.95,
               label=f"{label}: coverage {100 * c['coverage']:.1f}%, mean size {c['mean_set_size']:.2f}")
    ax.set_xlabel("set size (classes)")
    ax.set_ylabel("inputs")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def calibration_table(payload: Mapping[str, Any]) -> str:
    """The ``calibrate`` verb's report: what was fitted, then accuracy/ECE/NLL/Brier before and after per data set."""
    fit = payload["fit"]
    lines = [f"{payload['system']['path']} -> {payload['out']['path']} [{payload['out']['hash']}]",
             f"temperature {fit['temperature_before']:g} -> {fit['temperature']:g}; group weights "
             + ", ".join(f"{g} {w:.3g}" for g, w in fit["group_weights"].items())
             + (" (fitted)" if fit["per_group"] else " (kept)")]
    lines += [f"note: {note}" for note in fit["notes"]]
    rows = []
    for name, block in payload["evaluation"].items():
        for label, m in block["metrics"].items():
            rows.append([f"{name} ({block['n_inputs']})", label, f"{100 * m['accuracy']:.1f}%", f"{m['ece']:.3f}",
                         f"{m['nll']:.3f}", f"{m['brier']:.3f}"])
    return "\n".join(lines) + "\n\n" + table([["data", "posterior", "accuracy", "ECE", "NLL", "Brier"], *rows], right_align_from=2)


__all__ = ["calibration_table", "coverage_figure", "plot_coverage", "plot_reliability", "reliability_figure", "set_size_figure"]
