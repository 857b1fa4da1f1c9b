"""Several models on one system and data as one table, as the article's jina-clip-v1/v2 table:
a row per model, a column per method (top-1 accuracy), then each question's accuracy."""

from __future__ import annotations

from typing import Sequence

from cotembed.evaluation._evaluate import EvalReport
from cotembed.reporting._text import table


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def comparison_table(reports: Sequence[EvalReport]) -> str:
    """Top-1 accuracy per model and method, the chance line, and per-question accuracy per model."""
    if not reports:
        return ""
    methods = list(dict.fromkeys(m for r in reports for m in r.methods))
    rows: list[Sequence[str]] = [("model", *methods)]
    rows += [(r.model, *(_percent(r.methods[m].acc1) if m in r.methods else "-" for m in methods)) for r in reports]
    first = reports[0]
    lines = [f"top-1 accuracy, system {first.system['name'] or '(unnamed)'} [{first.system['hash']}], "
             f"{first.n_classes} classes, {first.n_inputs} inputs", table(rows), f"chance: {_percent(first.chance)}"]
    questions = list(dict.fromkeys(q for r in reports for q in r.question_accuracy))
    if questions:
        q_rows: list[Sequence[str]] = [("question accuracy", *questions)]
        q_rows += [(r.model, *(_percent(r.question_accuracy.get(q)) for q in questions)) for r in reports]
        lines += ["", table(q_rows)]
    return "\n".join(lines)


__all__ = ["comparison_table"]
