"""The accuracy-vs-shots curve (:mod:`cotembed._shots`) as a text table and a PNG."""

from __future__ import annotations

from typing import Any

import numpy as np


def shots_table(curve: dict[str, Any]) -> str:
    """Rows: K, then each few-shot method's mean ± std; the reference lines below."""
    methods = list(curve["lines"])
    header = ["shots", *methods]
    rows = [[str(k), *(f"{100 * curve['lines'][m][i]['mean']:.1f} ± {100 * curve['lines'][m][i]['std']:.1f}"
                       for m in methods)] for i, k in enumerate(curve["shots"])]
    widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]
    lines = [f"system {curve['system']['name'] or '(unnamed)'} [{curve['system']['hash']}]  model {curve['model']}  "
             f"inputs {curve['n_inputs']}  pool {curve['pool']}  draws {curve['draws']}",
             "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.append("zero-shot: " + ", ".join(f"{m} {100 * v:.1f}%" for m, v in curve["reference"].items()))
    return "\n".join(lines)


def plot_shots(curve: dict[str, Any], path: Any) -> Any:
    """Accuracy vs shots (log-2 axis), mean ± std bands, reference lines dashed."""
    from cotembed.reporting._plots import percent_axis, pyplot, reference_line, save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, points in curve["lines"].items():
        k = [p["shots"] for p in points]
        mean, std = 100 * np.array([p["mean"] for p in points]), 100 * np.array([p["std"] for p in points])
        ax.plot(k, mean, marker="o", label=method)
        ax.fill_between(k, mean - std, mean + std, alpha=0.2)
    styles = ["--", ":"]  # zero-shot dashed, refined dotted (colours tell the methods apart)
    for i, (method, value) in enumerate(curve["reference"].items()):
        reference_line(ax, value, method, styles[i % len(styles)], f"C{3 + i}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(curve["shots"], [str(k) for k in curve["shots"]])
    ax.set_xlabel("labelled examples per class")
    percent_axis(ax)
    ax.legend(fontsize=8)
    ax.set_title(f"{curve['system']['name'] or 'system'} · {curve['model']}")
    return save(fig, path)


__all__ = ["plot_shots", "shots_table"]
