"""The multi-label page and figure, from a section as ``eval --multi-label`` computes it (no model)."""

from __future__ import annotations

from typing import Any

from cotembed.reporting._multilabel import FIGURE_MAX_CLASSES, _shown_classes, render_multilabel_report


def section(n: int) -> dict[str, Any]:
    per_class = {f"class {i}": {"threshold": 0.5, "support": 3, "precision": 0.5, "recall": 0.5, "f1": 0.5,
                                "ap": (i % 10) / 10} for i in range(n)}
    per_class["<script>alert(1)</script>"] = {"threshold": 0.5, "support": 0, "precision": 0.0, "recall": None,
                                             "f1": None, "ap": None}
    return {"per_class_thresholds": True, "per_class": per_class, "micro_f1": 0.5, "map": 0.45, "mean_labels": 2.0}


def test_the_page_escapes_names_and_shows_every_class() -> None:
    payload = {"multi_label": section(5), "model": "m", "system": {"name": "s", "hash": "abc", "path": "s.yaml"},
               "n_inputs": 9, "errors": [{"source": "bad.png", "error": "cannot read"}],
               "decisions": {"multi_label": {"score": "rule support"}}}
    page = render_multilabel_report(payload)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<tr><td>") == 6 and "45.0%" in page and "bad.png" in page
    assert 'alt="per-class average precision and F1" src="data:image/png;base64,' in page
    assert f"({len(page.encode('utf-8')):,} bytes)" in page


def test_the_figure_keeps_the_classes_with_the_lowest_ap_when_there_are_too_many() -> None:
    per_class = section(FIGURE_MAX_CLASSES + 20)["per_class"]
    shown = _shown_classes(per_class)
    assert len(shown) == FIGURE_MAX_CLASSES and shown == [n for n in per_class if n in set(shown)]
    dropped = [n for n in per_class if n not in set(shown)]
    assert "<script>alert(1)</script>" in dropped  # no positive, no AP: the first to go
    assert max(per_class[n]["ap"] for n in shown) <= min(per_class[n]["ap"] for n in dropped if per_class[n]["ap"] is not None)
