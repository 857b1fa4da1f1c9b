"""Explain one input: each question's answers and the top classes, with the run's provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cotembed._predictions import Explanation
from cotembed.runs._assembly import build_classifier, check_calibration, check_examples
from cotembed.runs._options import ExamplesOptions, MethodSettings, ModelOptions
from cotembed.runs._provenance import Provenance
from cotembed.runs._resources import RunResources
from cotembed.scoring._posteriors import DEFAULT_PROBABILITIES


@dataclass(frozen=True, slots=True)
class ExplainRequest:
    """One input to explain, and how to score it.

    Parameters
    ----------
    system : str
        Path of the system file.
    input : str
        An image path, or with ``text`` a literal text (a text-only model always reads it as text).
    text : bool
        The input is a literal text.
    model, settings, examples : ModelOptions, MethodSettings, ExamplesOptions
        The model, the method's parameters and calibration data, few-shot examples.
    method : str
        The scoring method whose reasoning is shown.
    probabilities : str
        ``calibrated`` or ``normalised``.
    top_k : int
        Classes shown.

    Examples
    --------
    >>> from cotembed.runs import ExplainRequest, explain
    >>> result = explain(ExplainRequest("examples/creatures-text/system.yaml", "a golden bird breathing fire",
    ...                                 text=True, model=ModelOptions("minilm")))                           # doctest: +SKIP
    >>> [(q.prompt, q.answer) for q in result.explanation.questions]                                        # doctest: +SKIP
    """

    system: str
    input: str
    text: bool = False
    model: ModelOptions = field(default_factory=ModelOptions)
    method: str = "cot"
    settings: MethodSettings = field(default_factory=MethodSettings)
    probabilities: str = DEFAULT_PROBABILITIES
    examples: ExamplesOptions = field(default_factory=ExamplesOptions)
    top_k: int = 5

    def check(self) -> None:
        """What needs no file and no model."""
        check_calibration(self.settings, (self.method,))
        check_examples(self.examples, (self.method,))


@dataclass(frozen=True, slots=True)
class ExplainResult:
    """The explanation (which records model, system fingerprint, method, temperature and probabilities)
    and the run's full provenance (method parameters, examples, system path)."""

    explanation: Explanation
    provenance: Provenance
    notices: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``cotembed explain --format json``."""
        return self.explanation.to_dict()


def explain(request: ExplainRequest) -> ExplainResult:
    """Explain the request's input; bad input raises :class:`~cotembed.errors.InputError` naming the option.

    Parameters
    ----------
    request : ExplainRequest
        The input, the method and the model.

    Returns
    -------
    ExplainResult
        The explanation and the provenance; ``to_dict()`` is ``explain --format json``.
    """
    from cotembed.system import System

    request.check()
    system = System.load(request.system)
    notices: list[str] = []
    with RunResources(request.model) as res:
        clf = build_classifier(res, system, request.model.spec, request.method, model=request.model,
                               settings=request.settings, examples=request.examples, probabilities=request.probabilities,
                               notices=notices)
        as_text = request.text or set(clf.encoder.modalities) == {"text"}
        explanation = clf.explain(**({"text": request.input} if as_text else {"image": request.input}), top_k=request.top_k)
        provenance = Provenance.of(clf, request.method, request.system)
    return ExplainResult(explanation, provenance, tuple(notices))


__all__ = ["ExplainRequest", "ExplainResult", "explain"]
