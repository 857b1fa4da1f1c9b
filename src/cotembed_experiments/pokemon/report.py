"""The reproduction as text: the test set, what was skipped, and our figures beside the article's."""

from __future__ import annotations

from typing import Any

from cotembed.reporting._text import table
from cotembed_experiments.pokemon.harness import ARTICLE_NOTE


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _points(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.2f}"


def reproduction_table(payload: dict[str, Any], failure_limit: int = 10) -> str:
    """``payload`` is the JSON the CLI prints (``cotembed reproduce pokemon --format json``)."""
    test = payload["test_set"]
    lines = [
        f"dataset {payload['dataset']}  system {payload['system']['name']} [{payload['system']['hash']}]",
        f"test set: {test['size']} images (seed {test['seed']}, requested {test['requested']}) drawn from "
        f"{test['candidates']} cards named after a class; art box {test['art_box']}",
        "classes: " + ", ".join(f"{name} {count}" for name, count in test["classes"].items()),
        f"images: {test['downloads']['fetched']} downloaded now, {test['downloads']['reused']} already in "
        f"{payload['data_dir']}, {test['downloads']['failed']} skipped",
    ]
    for failure in test["failures"][:failure_limit]:
        lines.append(f"  skipped {failure['id']} ({failure['name']}): {failure['error']}")
    if len(test["failures"]) > failure_limit:
        lines.append(f"  ... and {len(test['failures']) - failure_limit} more (see --format json)")
    lines.append("")
    rows = [["model", "method", "acc1", "article", "difference"]]
    for row in payload["comparison"]:
        rows.append([row["model"], row["method"], _pct(row["acc1"]), _pct(row["article_acc1"]), _points(row["difference"])])
    lines.append(table(rows, right_align_from=2))
    for failed in payload.get("failed_models", []):
        lines.append(f"model {failed['model']} failed: {failed['error']}")
    lines.append("")
    lines.append(f"note: {ARTICLE_NOTE}; the article gives no hybrid figure.")
    if test["manifest"]:
        lines.append(f"the test set is listed in {test['manifest']} (cotembed eval SYSTEM {test['manifest']} reruns it)")
    return "\n".join(lines)


__all__ = ["reproduction_table"]
