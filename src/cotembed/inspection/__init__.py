"""Diagnostics of a classification system: what its rules can tell apart, and how a model answers it.

The article's lesson is that the system decides everything, so a failing system
should say *why* it fails. Two levels:

* **Static** (:func:`static_report`, no model): classes that no question separates,
  pairs that a single question separates (one wrong answer confuses them), options no
  rule uses or only one class uses, how much each group tells about the class
  (entropy of the partition of classes it induces), how much two groups repeat each
  other (normalised mutual information), and the accuracy the rules could reach if
  every question were answered right (the *ceiling*).
* **With a model and labelled data** (:func:`inspect_system`): per-question accuracy
  against chance, questions answered no better than chance, options whose prompts the
  model can hardly tell apart, rules the model's answers disagree with, and the
  confusions that cost most, each with a concrete suggestion.

Everything runs on cached embeddings through :class:`~cotembed.scoring.Scorer` and
:func:`~cotembed.evaluation._evaluate.evaluate`; nothing here changes a system or the model.

Definitions (classes weigh equally; a class that accepts several options in a group
spreads its unit mass evenly over them):

* partition of group g: ``p_g(j) = 1/N * sum_c [j in S_c^g] / |S_c^g|``; the group's
  information is its entropy ``H_g = -sum_j p_g(j) log2 p_g(j)`` (at most
  ``log2 N``, the class entropy).
* redundancy of groups g and h: ``NMI = I(g; h) / ((H_g + H_h) / 2)`` from the joint
  ``p(j, k) = 1/N * sum_c [j in S_c^g][k in S_c^h] / (|S_c^g| |S_c^h|)``
  (1 when both carry nothing, as in scikit-learn).
* a group *separates* two classes when their option sets in it are disjoint, so no
  answer fits both.
* the ceiling: an oracle answers every question of an input of class c with an option
  c accepts (uniformly among them when it accepts several). The true class then
  reaches the highest possible CoT score; every class that accepts all the answers
  ties with it, and a tie is broken uniformly. ``ceiling_c = E[1 / #tied]`` and the
  ceiling is the mean over classes. With one option per rule it is
  ``#distinct rules / N``: classes with identical rules share their accuracy.
* chance of a question: the accuracy of a uniformly random answer,
  ``mean over inputs of |S_true^g| / #options``; *skill* is
  ``(accuracy - chance) / (1 - chance)``. A question is *at chance* when its accuracy
  is not above ``chance + 2 standard errors`` and *weak* when its skill is below
  ``weak_skill`` (default 0.25).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cotembed._embeddings import EmbeddingSet
from cotembed.errors import InputError
from cotembed.inspection._data import (
    DUPLICATE_COSINE,
    WEAK_SKILL,
    DataReport,
    EmbedTexts,
    QuestionStats,
    data_report,
    near_duplicate_options,
)
from cotembed.inspection._static import GroupInfo, StaticReport, static_report
from cotembed.inspection._suggest import SUGGESTION_ORDER, Suggestion
from cotembed.scoring import ScoringConfig
from cotembed.system import System


# --------------------------------------------------------------------- both
@dataclass
class Inspection:
    """The static report, and with a model the near-duplicate options, and with data the data report."""

    static: StaticReport
    near_duplicates: list[dict[str, Any]] | None = None
    data: DataReport | None = None
    duplicate_threshold: float = DUPLICATE_COSINE

    @property
    def suggestions(self) -> list[Suggestion]:
        """Every suggestion, the ones that cost most accuracy first (see ``SUGGESTION_ORDER``)."""
        out = list(self.static.suggestions)
        for d in self.near_duplicates or ():
            out.append(Suggestion("near-duplicate", f"in {d['group']!r}, {d['a']!r} and {d['b']!r} read almost the same to the model "
                                                    f"(cosine {d['cosine']:.3f}): merge them or reword one", groups=(d["group"],)))
        if self.data is not None:
            out.extend(self.data.suggestions)
        rank = {kind: i for i, kind in enumerate(SUGGESTION_ORDER)}
        return sorted(out, key=lambda s: rank.get(s.kind, len(rank)))

    def to_dict(self) -> dict[str, Any]:
        static = self.static.to_dict()
        static.pop("suggestions")
        return {
            "system": static.pop("system"),
            "static": static,
            "near_duplicates": self.near_duplicates,
            "duplicate_threshold": self.duplicate_threshold if self.near_duplicates is not None else None,
            "data": None if self.data is None else {k: v for k, v in self.data.to_dict().items() if k != "suggestions"},
            "suggestions": [s.to_dict() for s in self.suggestions],
        }


def inspect_system(
    system: System,
    *,
    embed: EmbedTexts | None = None,
    data: EmbeddingSet | None = None,
    config: ScoringConfig | None = None,
    method: str = "cot",
    duplicate_threshold: float = DUPLICATE_COSINE,
    weak_skill: float = WEAK_SKILL,
    max_confusions: int = 10,
) -> Inspection:
    """Static diagnostics; with ``embed`` (e.g. ``PromptBank.embed``) near-duplicate options; with ``data`` and ``config`` the rest."""
    static = static_report(system)
    duplicates = near_duplicate_options(system, embed, duplicate_threshold) if embed is not None else None
    report = None
    if data is not None:
        if embed is None or config is None:
            raise InputError("inspecting with data needs the model's prompt embeddings (embed=) and a scoring config (config=)")
        report = data_report(system, embed, data, config, method, weak_skill=weak_skill, max_confusions=max_confusions)
    return Inspection(static, duplicates, report, duplicate_threshold)


__all__ = [
    "DUPLICATE_COSINE",
    "SUGGESTION_ORDER",
    "WEAK_SKILL",
    "DataReport",
    "GroupInfo",
    "Inspection",
    "QuestionStats",
    "StaticReport",
    "Suggestion",
    "data_report",
    "inspect_system",
    "near_duplicate_options",
    "static_report",
]
