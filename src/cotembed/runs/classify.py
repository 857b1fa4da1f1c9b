"""Classify images or texts: one request in, predictions with their provenance out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cotembed.classifier import CoTClassifier
from cotembed.data import Sample
from cotembed.errors import InputError
from cotembed.pipeline import SampleError
from cotembed.predictions import Prediction
from cotembed.runs.assembly import apply_decisions, build_classifier, check_calibration, check_examples
from cotembed.runs.inputs import check_model_inputs
from cotembed.runs.options import DecisionOptions, ExamplesOptions, MethodSettings, ModelOptions
from cotembed.runs.provenance import Provenance
from cotembed.runs.resources import RunResources


@dataclass(frozen=True, slots=True)
class ClassifyRequest:
    """What to classify, with what, and which decisions to take.

    Parameters
    ----------
    system : str
        Path of the system file (.yaml or .json).
    inputs : tuple of str
        Image files, folders or CSV/JSONL manifests; with ``text``, literal texts.
    text : bool
        The inputs are literal texts to classify (each its own name in the output), not paths.
    embeddings : str or None
        A Parquet dataset written by ``cotembed embed`` to score instead of ``inputs``.
    model : ModelOptions
        The model, the cache and how inputs reach the model.
    method : str
        The scoring method (``cot``, ``baseline``, ``hybrid``, ``adaptive``, ...).
    settings : MethodSettings
        The method's declared parameters and the data it learns from.
    decisions : DecisionOptions
        Probabilities, fit score, abstention, conformal sets, multi-label thresholds.
    examples : ExamplesOptions
        Few-shot examples and transduction on the batch.
    top_k : int
        Classes reported per input.

    Examples
    --------
    >>> from cotembed.runs import ClassifyRequest, classify
    >>> result = classify(ClassifyRequest("examples/critters/system.yaml", (".cotembed-data/critters-easy",)))  # doctest: +SKIP
    >>> result.provenance.model, result.predictions[0].prediction                                              # doctest: +SKIP
    """

    system: str
    inputs: tuple[str, ...] = ()
    text: bool = False
    embeddings: str | None = None
    model: ModelOptions = field(default_factory=ModelOptions)
    method: str = "cot"
    settings: MethodSettings = field(default_factory=MethodSettings)
    decisions: DecisionOptions = field(default_factory=DecisionOptions)
    examples: ExamplesOptions = field(default_factory=ExamplesOptions)
    top_k: int = 3

    def check(self) -> None:
        """What needs no file and no model: one source of inputs, options that need each other."""
        if bool(self.inputs) == bool(self.embeddings):
            what = "give INPUTS or --embeddings DIR" + (", not both" if self.inputs else "")
            raise InputError(f"classify: {what} (see `cotembed classify --help`)")
        self.decisions.check("classify")
        check_calibration(self.settings, (self.method,))
        check_examples(self.examples, (self.method,))

    def samples(self) -> list[Sample]:
        """The inputs as samples (none with ``embeddings``): literal texts, or the files behind the paths."""
        from cotembed.data import collect_samples

        if self.embeddings:
            return []
        if self.text:  # a literal text is its own name in the output (not text[0])
            return [Sample(source=t, kind="text", text=t) for t in self.inputs]
        return collect_samples(list(self.inputs), allow_outside=self.model.allow_outside_paths)


@dataclass(frozen=True, slots=True)
class ClassifyResult:
    """Predictions and the inputs that could not be used, with how they were made.

    ``notices``: what a person running it should read (skipped calibration inputs, notes on
    examples); the CLI prints them on stderr.
    """

    provenance: Provenance
    predictions: tuple[Prediction, ...]
    errors: tuple[SampleError, ...]
    notices: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Every input classified (no error) and at least one prediction."""
        return not self.errors and bool(self.predictions)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``cotembed classify --format json``."""
        return {**self.provenance.to_dict(), "predictions": [p.to_dict() for p in self.predictions],
                "errors": [e.to_dict() for e in self.errors]}


def classify(request: ClassifyRequest) -> ClassifyResult:
    """Classify the request's inputs; bad input raises :class:`~cotembed.errors.InputError` naming the option.

    One input that cannot be read is an entry of ``errors``, never the end of the run.
    """
    from cotembed.encoders import DEFAULT_MODEL
    from cotembed.system import System

    request.check()
    system = System.load(request.system)
    samples = request.samples()
    model = request.model
    if samples:
        check_model_inputs([model.spec], samples)
    notices: list[str] = []
    with RunResources(model) as res:

        def decided(spec: str, inputs: list[Sample]) -> CoTClassifier:
            clf = build_classifier(res, system, spec, request.method, model=model, settings=request.settings,
                                   examples=request.examples, probabilities=request.decisions.probabilities,
                                   inputs=inputs, notices=notices)
            return apply_decisions(clf, request.decisions, (model.spec,), model.allow_outside_paths)

        predictions: list[Prediction]
        errors: list[SampleError]
        if request.embeddings:
            from cotembed.runs.stored import predictions_from_set, stored_embeddings

            default = None if model.spec == DEFAULT_MODEL else model.spec  # the dataset's own model unless another is named
            stored, spec = stored_embeddings(request.embeddings, res, default, notices)
            clf = decided(spec, [])
            predictions, errors = predictions_from_set(clf, stored, request.top_k), list(stored.errors)
        else:
            clf = decided(model.spec, samples)
            predictions, errors = clf.classify_samples(samples, top_k=request.top_k)
        provenance = Provenance.of(clf, request.method, request.system)
    notices.extend(f"cotembed: {note}" for note in provenance.notes)
    return ClassifyResult(provenance, tuple(predictions), tuple(errors), tuple(notices))


__all__ = ["ClassifyRequest", "ClassifyResult", "classify"]
