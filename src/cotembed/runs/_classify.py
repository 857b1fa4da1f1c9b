"""Classify images or texts: one request in, predictions with their provenance out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cotembed._classifier import CoTClassifier
from cotembed._pipeline import SampleError
from cotembed._predictions import Prediction
from cotembed.data import Sample
from cotembed.errors import InputError
from cotembed.runs._assembly import apply_decisions, build_classifier, check_calibration, check_examples
from cotembed.runs._inputs import check_model_inputs
from cotembed.runs._options import DecisionOptions, ExamplesOptions, MethodSettings, ModelOptions
from cotembed.runs._provenance import Provenance, SystemRef
from cotembed.runs._resources import RunResources

if TYPE_CHECKING:
    from cotembed.distributed.ray import RayRun


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
    model_given : bool
        False: with ``embeddings``, score with the model the dataset was written with; True (a
        model named, even the default's name): that model, refused if the dataset holds another.

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
    model_given: bool = True

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
    """Classify the request's inputs.

    One input that cannot be read is an entry of ``errors``, never the end of the run.

    Parameters
    ----------
    request : ClassifyRequest
        What to classify and how.

    Returns
    -------
    ClassifyResult
        Predictions, errors and the provenance; ``to_dict()`` is ``classify --format json``.

    Raises
    ------
    InputError
        Bad input (options that need each other, unreadable system, a model that cannot take
        the inputs), with the message the command line prints (exit code 2).
    """
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
            return apply_decisions(clf, request.decisions, (model.spec,), model.allow_outside_paths,
                                   request.examples.ignore_unknown)

        predictions: list[Prediction]
        errors: list[SampleError]
        if request.embeddings:
            from cotembed.runs._stored import predictions_from_set, stored_embeddings

            named = model.spec if request.model_given else None  # else the dataset's own model
            stored, spec = stored_embeddings(request.embeddings, res, named, notices)
            clf = decided(spec, [])
            predictions, errors = predictions_from_set(clf, stored, request.top_k), list(stored.errors)
        else:
            clf = decided(model.spec, samples)
            predictions, errors = clf.classify_samples(samples, top_k=request.top_k)
        provenance = Provenance.of(clf, request.method, request.system)
    notices.extend(f"cotembed: {note}" for note in provenance.notes)
    return ClassifyResult(provenance, tuple(predictions), tuple(errors), tuple(notices))


@dataclass(frozen=True, slots=True)
class RayOptions:
    """``classify`` on a Ray cluster, predictions appended as Parquet to ``out`` (reruns skip what it holds).

    Parameters
    ----------
    out : str
        The predictions' dataset folder.
    address : str or None
        Cluster to join (``HOST:PORT``, ``ray://HOST:10001`` or ``auto``; None: start a local one).
    actors : int
        Model actors, each loading the model once.
    gpus_per_actor : float
        GPUs reserved per actor.
    """

    out: str
    address: str | None = None
    actors: int = 1
    gpus_per_actor: float = 0.0

    def check(self, request: ClassifyRequest) -> None:
        import math

        if request.text or request.embeddings:
            raise InputError("--engine ray classifies image files: drop --text / --embeddings")
        if not (math.isfinite(self.gpus_per_actor) and self.gpus_per_actor >= 0):
            raise InputError(f"--gpus-per-actor must be a finite number >= 0, got {self.gpus_per_actor}")


@dataclass(frozen=True, slots=True)
class RayClassifyResult:
    """What a Ray run wrote (rows, rows already there, errors, seconds), with the system, method and temperature."""

    run: RayRun
    system: SystemRef
    method: str
    temperature: float

    @property
    def ok(self) -> bool:
        return not self.run.errors

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``cotembed classify --engine ray --format json``."""
        return {**self.run.to_dict(), "system": self.system.to_dict(), "method": self.method, "temperature": self.temperature}


def classify_on_ray(request: ClassifyRequest, ray: RayOptions) -> RayClassifyResult:
    """Classify the request's image inputs on Ray into ``ray.out`` (needs the ``ray`` extra).

    Parameters
    ----------
    request : ClassifyRequest
        What to classify (image paths) and how.
    ray : RayOptions
        The output folder and the cluster.
    """
    from cotembed._classifier import resolve_temperature
    from cotembed.distributed.ray import classify_to_parquet
    from cotembed.scoring import ScoringConfig
    from cotembed.system import System

    request.check()
    ray.check(request)
    system = System.load(request.system)
    model = request.model
    with RunResources(model) as res:
        encoder = res.encoder(model.spec)
        config = ScoringConfig(resolve_temperature(model.temperature, system, encoder), float(model.hybrid_weight))
        run = classify_to_parquet(system, request.system, list(request.inputs), model.spec, ray.out, config=config,
                                  method=request.method, address=ray.address, actors=ray.actors,
                                  gpus_per_actor=ray.gpus_per_actor, model_batch_size=model.batch_size, cache=res.cache,
                                  allow_outside=model.allow_outside_paths, max_pixels=model.max_pixels,
                                  progress=not model.quiet, encoder=encoder)
    return RayClassifyResult(run, SystemRef(system.name, request.system, system.fingerprint), request.method,
                             config.temperature)


__all__ = ["ClassifyRequest", "ClassifyResult", "RayClassifyResult", "RayOptions", "classify", "classify_on_ray"]
