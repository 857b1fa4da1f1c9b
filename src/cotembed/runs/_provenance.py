"""What makes a result reproducible, recorded by the run that made it: system fingerprint, model,
method and its parameters as scored, temperature, probabilities, decisions, examples, transduction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cotembed._classifier import CoTClassifier


@dataclass(frozen=True, slots=True)
class SystemRef:
    """The system a result was made with: its name, the path it was loaded from, its fingerprint."""

    name: str
    path: str
    hash: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "path": self.path, "hash": self.hash}


@dataclass(frozen=True, slots=True)
class Provenance:
    """How one result was made.

    Parameters
    ----------
    system : SystemRef
        Name, path and fingerprint of the system.
    model : str
        The model key (weights and preprocessing, not just the spec typed).
    method : str
        The scoring method.
    temperature, hybrid_weight : float
        The softmax temperature in force and hybrid's class-name weight.
    method_options : Mapping[str, Any]
        The method's parameters as scored (fitted on the batch where the method learns from it;
        seeds of seeded methods included); empty when the method has none.
    probabilities : str
        ``calibrated`` or ``normalised``.
    decisions : Mapping[str, Any]
        Fit score, abstention, conformal sets and multi-label thresholds in force.
    transductive : bool
        Whether posteriors were refined on the unlabelled batch.
    examples : Mapping[str, Any] or None
        Source and count of the few-shot examples, if any.
    notes : tuple of str
        What a reader should know (examples left out, a batch too small to refine).
    """

    system: SystemRef
    model: str
    method: str
    temperature: float
    hybrid_weight: float
    method_options: Mapping[str, Any]
    probabilities: str
    decisions: Mapping[str, Any]
    transductive: bool = False
    examples: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, clf: CoTClassifier, method: str, system_path: str) -> "Provenance":
        """The provenance of what ``clf`` just scored (after its last batch, for methods fitted on it)."""
        from cotembed._examples import provenance as examples_provenance

        used = clf.scored_with or clf.scoring_method  # as fitted on the batch, for methods that learn from it
        settings = used.settings(clf.compiled)  # a wrapper without parameters (--transductive) still reports its own
        extra = examples_provenance(clf, settings or {})
        return cls(system=SystemRef(clf.system.name, system_path, clf.system.fingerprint), model=clf.encoder.model_key,
                   method=method, temperature=clf.temperature, hybrid_weight=clf.hybrid_weight,
                   method_options=dict(settings or {}), probabilities=clf.config.probabilities,
                   decisions=clf.decisions.to_dict(), transductive=bool(extra["transductive"]),
                   examples=extra.get("examples"), notes=tuple(extra.get("notes", ())))

    def run_info(self) -> dict[str, Any]:
        """The run's settings as the JSON output's leading keys (without examples and transduction)."""
        info: dict[str, Any] = {"system": self.system.to_dict(), "model": self.model, "method": self.method,
                                "temperature": self.temperature, "hybrid_weight": self.hybrid_weight}
        if self.method_options:
            info["method_options"] = dict(self.method_options)
        info["probabilities"] = self.probabilities
        info["decisions"] = dict(self.decisions)
        return info

    def examples_info(self) -> dict[str, Any]:
        """Transduction on/off, the examples' source and count, and the notes."""
        out: dict[str, Any] = {"transductive": self.transductive}
        if self.examples is not None:
            out["examples"] = dict(self.examples)
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**self.run_info(), **self.examples_info()}


__all__ = ["Provenance", "SystemRef"]
