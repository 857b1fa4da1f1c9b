"""The studio's proposals: a candidate system split into changes a person accepts one by one, and the
progress of a bounded optimise run the page polls while the search thread writes it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Sequence

from cotembed.studio._changes import apply_changes, describe
from cotembed.system import System


@dataclass
class Proposal:
    """A candidate system from a proposer, split into changes a person accepts one by one."""

    id: str
    source: str
    base: System
    changes: list[dict[str, Any]]
    effect: dict[str, Any]
    note: str = ""
    measured_on: Any = None
    """The data the effect was measured on (an EmbeddingSet), to measure a chosen subset of the changes on."""

    def apply(self, system: System, accepted: Sequence[int]) -> System:
        """``system`` with the accepted changes (indices into :attr:`changes`) made, validated."""
        return apply_changes(system, [self.changes[i] for i in sorted(set(accepted)) if 0 <= i < len(self.changes)])

    def to_dict(self) -> dict[str, Any]:
        changes = [{**c, "text": describe(c)} if c["kind"] in ("field", "group_description") else c for c in self.changes]
        return {"id": self.id, "source": self.source, "changes": changes, "effect": self.effect, "note": self.note}


class Optimization:
    """Progress of one bounded optimise run, read by the page while the search thread writes it."""

    def __init__(self, budget: int):
        self.budget = budget
        self.candidates = 0
        self.rounds = 0
        self.best_val: float | None = None
        self.start_val: float | None = None
        self.status = "running"
        self.stop = threading.Event()
        self._interrupted = False
        self.thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    def record(self, row: dict[str, Any]) -> None:
        """The search's history callback; a stop request ends the search as Ctrl+C would (it keeps what it found)."""
        kind = row.get("type")
        if kind == "start":
            self.start_val = self.best_val = row.get("val_accuracy")
        elif kind == "candidate":
            self.candidates = int(row.get("index", self.candidates))
            self.rounds = int(row.get("round", self.rounds))
            if row.get("new_best"):
                self.best_val = row.get("val_accuracy")
        if self.stop.is_set() and kind != "start" and not self._interrupted:
            self._interrupted = True  # once: the search then records what it had and ends
            raise KeyboardInterrupt

    def finish(self, reason: str) -> None:
        self.status = "stopped" if reason == "interrupted" else reason if reason.startswith("failed") else f"done ({reason})"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "running": self.running, "candidates": self.candidates, "budget": self.budget,
                "rounds": self.rounds, "start_val": self.start_val, "best_val": self.best_val}


def proposal_changes(before: System, after: System, rule_changes: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The induced system's differences as separate changes: rules, weights, dropped groups, temperature."""
    changes: list[dict[str, Any]] = [{"kind": "rule", **c} for c in rule_changes]
    kept = {g.name: g for g in after.groups}
    for g in before.groups:
        if g.name not in kept:
            changes.append({"kind": "drop", "group": g.name, "before": g.weight, "after": 0.0})
        elif kept[g.name].weight != g.weight:
            changes.append({"kind": "weight", "group": g.name, "before": g.weight, "after": kept[g.name].weight})
    if after.temperature != before.temperature:
        changes.append({"kind": "temperature", "before": before.temperature, "after": after.temperature})
    return changes


__all__ = ["Optimization", "Proposal", "proposal_changes"]
