"""Figures (matplotlib, Agg backend): each takes a result's ``to_dict()`` and writes a PNG.

Like the text tables, plots only present: every number drawn is in the JSON
written beside the PNG. Helpers stay small so other figures can reuse them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from cotembed.errors import InputError

DPI = 120


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed), or a hint naming the extra."""
    try:
        import matplotlib
    except ImportError:
        raise InputError("plots need matplotlib, a dependency of cotembed: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str | Path) -> Path:
    """Write the figure as PNG (parent folders created) and free it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    except OSError as exc:
        raise InputError(f"{path}: cannot write the plot ({exc.strerror or exc})") from exc
    finally:
        pyplot().close(fig)
    return path


def percent_axis(ax: Any) -> None:
    """y from 0 to 100 %, light grid: accuracies of different runs stay comparable by eye."""
    ax.set_ylim(-2, 102)  # lines at 0 % and 100 % stay visible
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, alpha=0.3)


def reference_line(ax: Any, value: float, label: str, style: str = "--", colour: str = "grey") -> None:
    ax.axhline(100 * value, linestyle=style, color=colour, linewidth=1.2, label=label)


def curve_figure(curve: Mapping[str, Any]) -> Any:
    """Accuracy vs number of groups k: mean line, min-max band, ±1 std bars; Q on the top axis."""
    plt = pyplot()
    points = curve["points"]
    ks = [p["k"] for p in points]
    mean = [100 * p["mean"] for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.fill_between(ks, [100 * p["min"] for p in points], [100 * p["max"] for p in points],
                    alpha=0.2, color="tab:blue", label="min-max over subsets")
    ax.errorbar(ks, mean, yerr=[100 * p["std"] for p in points], color="tab:blue", marker="o",
                capsize=3, label=f"{curve['method']}: mean ± 1 std")
    baseline = curve["baseline"]
    reference_line(ax, baseline["accuracy"], f"baseline (N={baseline['text_prompts']}): {100 * baseline['accuracy']:.1f}%")
    reference_line(ax, curve["chance"], f"chance: {100 * curve['chance']:.1f}%", style=":", colour="lightgrey")
    ax.set_xticks(ks)
    ax.set_xlabel("number of questions (groups) k")
    percent_axis(ax)
    top = ax.secondary_xaxis("top")
    top.set_xticks(ks)
    top.set_xticklabels([_prompt_label(p) for p in points], fontsize=8)
    top.set_xlabel("text prompts Q (mean over subsets)", fontsize=9)
    system = curve["system"]
    ax.set_title(f"{system.get('name') or 'system'} [{system['hash']}] on {curve['model']}, {curve['n_inputs']} inputs",
                 fontsize=10)
    ax.legend(loc="best", fontsize=8)
    return fig


def _prompt_label(point: Mapping[str, Any]) -> str:
    low, high = point["prompts_min"], point["prompts_max"]
    return str(low) if low == high else f"{point['prompts_mean']:.1f}"


def plot_curve(curve: Mapping[str, Any], path: str | Path) -> Path:
    return save(curve_figure(curve), path)


def trajectory_figure(history: Sequence[Mapping[str, Any]], title: str = "") -> Any:
    """An optimisation run: every candidate's training accuracy (dots), the accepted systems' training
    and validation accuracy (steps), and the best system (star), against candidates evaluated."""
    plt = pyplot()
    scored = [r for r in history if r.get("type") in ("start", "candidate")]
    if not scored:
        raise InputError("trajectory plot: the history holds no scored candidate")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([r["index"] for r in scored], [100 * r["train_accuracy"] for r in scored], s=4, color="lightgrey",
               label="candidates (train)", zorder=1)
    accepted = [r for r in scored if r.get("accepted")]
    last = scored[-1]["index"]
    xs = [r["index"] for r in accepted] + [last]
    ax.step(xs, [100 * r["train_accuracy"] for r in accepted] + [100 * accepted[-1]["train_accuracy"]], where="post",
            color="tab:blue", label="accepted (train)", zorder=2)
    if all(r.get("val_accuracy") is not None for r in accepted):
        ax.step(xs, [100 * r["val_accuracy"] for r in accepted] + [100 * accepted[-1]["val_accuracy"]], where="post",
                color="tab:orange", label="accepted (validation)", zorder=2)
    best = [r for r in accepted if r.get("new_best")][-1]
    best_value = best["val_accuracy"] if best.get("val_accuracy") is not None else best["train_accuracy"]
    ax.scatter([best["index"]], [100 * best_value], marker="*", s=160, color="tab:red", zorder=3,
               label=f"best: {100 * best_value:.1f}% at candidate {best['index']}")
    ax.set_xlabel("candidates evaluated")
    percent_axis(ax)
    ax.set_title(title or "optimisation trajectory", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_trajectory(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    return save(trajectory_figure(history, title), path)


__all__ = ["curve_figure", "percent_axis", "plot_curve", "plot_trajectory", "pyplot", "reference_line", "save", "trajectory_figure"]
