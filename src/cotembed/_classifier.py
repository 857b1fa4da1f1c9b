"""CoTClassifier: a system plus a frozen encoder, with a scikit-learn-style API.

It composes the pieces that also work on their own: a :class:`PromptBank` (prompt
texts -> vectors, each encoded once per model), a :class:`Scorer` (pure numpy) and the
cached streaming pipeline for inputs. Every prediction can explain itself.
"""

from __future__ import annotations

import copy
import io
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from cotembed._embeddings import EmbeddingSet, PromptBank
from cotembed._pipeline import SampleError, stream_embeddings
from cotembed._predictions import ClassEvidence, Explanation, Prediction, QuestionAnswer, predictions_of
from cotembed.cache import EmbeddingStore, NoCache
from cotembed.data import Sample, text_samples
from cotembed.encoders._base import Encoder
from cotembed.errors import InputError
from cotembed.evaluation._evaluate import EvalReport, evaluate
from cotembed.scoring import DEFAULT_TEMPERATURE, Scorer, ScoringConfig, ScoringMethod, method_class
from cotembed.scoring._conformal import SplitConformal
from cotembed.scoring._decisions import Abstention, Decisions, fit_conformal, multilabel_targets
from cotembed.scoring._multilabel import fit_thresholds, given_threshold
from cotembed.scoring._posteriors import (
    DEFAULT_PROBABILITIES,
    Scored,
    check_fit_score,
    class_probabilities,
    fit_scores,
    score_embeddings,
)
from cotembed.system import System


def resolve_temperature(explicit: float | None, system: System, encoder: Encoder | None) -> float:
    """Caller's value, else the system's, else the model's logit scale, else CLIP's 100."""
    for value in (explicit, system.temperature, getattr(encoder, "logit_scale", None) if encoder is not None else None):
        if value is not None:
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"temperature must be a positive finite number, got {value}")
            return float(value)
    return DEFAULT_TEMPERATURE


class CoTClassifier:
    """Classify images or texts with a frozen encoder and a classification system.

    >>> clf = CoTClassifier(System.load("system.yaml"), load_encoder("minilm"))  # doctest: +SKIP
    >>> clf.predict(texts=["a crimson winged thing over lava"])                  # doctest: +SKIP

    The modality is explicit: ``predict(images=[...])`` or ``predict(texts=[...])``.
    A positional argument is accepted where it cannot be misread: PIL images and
    ``Path`` objects are images, and strings are texts for a text-only model and
    image paths for an image-only one.

    Parameters
    ----------
    system : System
        The classification system: attribute groups, their options and each class's rule.
    encoder : Encoder
        The frozen embedding model, e.g. ``load_encoder("critters")``.
    method : str, default "cot"
        A registered scoring method (``cotembed.scoring.method_names()``): ``"baseline"``,
        ``"cot"``, ``"hybrid"``, ...
    temperature : float or None, default None
        Softmax temperature of each group; None takes the system's, else the model's
        logit scale, else 100.
    hybrid_weight : float, default 1.0
        Weight of the class-name term in the ``hybrid`` method.
    cache : EmbeddingStore or None, default None
        Where embeddings are kept between runs (``open_cache(path)``); None keeps nothing.
    batch_size : int or None, default None
        Inputs per model call; None uses the encoder's own.
    progress : bool, default False
        Show progress bars (on stderr) while embedding.
    method_options : dict or None, default None
        The method's declared parameters (e.g. ``{"confidence": 0.9}`` for ``adaptive``);
        an unknown key is an error naming the accepted ones.
    max_pixels : int or None, default None
        Images above this many pixels are reported as errors instead of decoded.
    probabilities : {"calibrated", "normalised"}, default "calibrated"
        Calibrated: each method's posterior (cot: the product of the groups' likelihoods);
        normalised: the scores rescaled to sum to 1, as the first releases reported.
    decisions : Decisions or None, default None
        Abstention threshold, conformal threshold, multi-label thresholds and the fit score
        predictions carry; usually set through :meth:`with_abstention`, :meth:`with_conformal`,
        :meth:`with_multilabel` and :meth:`with_fit_score`.
    examples : paths, samples, EmbeddingSet or None, default None
        Labelled examples that fit the few-shot methods (``prototype``, ``gda``, ``fused``);
        see :meth:`with_examples`.
    transductive : bool, default False
        Refine the method's posterior on each unlabelled batch it classifies (no label read).

    Examples
    --------
    >>> from cotembed import CoTClassifier, System, load_encoder
    >>> clf = CoTClassifier(System.load("examples/critters/system.yaml"), load_encoder("critters"))  # doctest: +SKIP
    >>> clf.predict(images=["creature.png"])  # one class name per input                           # doctest: +SKIP
    """

    def __init__(
        self,
        system: System,
        encoder: Encoder,
        method: str = "cot",
        temperature: float | None = None,
        hybrid_weight: float = 1.0,
        cache: EmbeddingStore | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        method_options: dict[str, Any] | None = None,
        max_pixels: int | None = None,
        probabilities: str = DEFAULT_PROBABILITIES,
        decisions: Decisions | None = None,
        examples: Any = None,
        transductive: bool = False,
    ):
        method_class(method)
        self.system = system
        self.encoder = encoder
        self.method = method
        self.config = ScoringConfig(resolve_temperature(temperature, system, encoder), float(hybrid_weight),
                                    dict(method_options or {}), probabilities)
        self.decisions = decisions or Decisions()
        """Abstention, conformal sets and multi-label thresholds in force (see :meth:`with_abstention`, ...)."""
        self.cache: EmbeddingStore = cache if cache is not None else NoCache()
        self.batch_size = batch_size
        self.progress = progress
        self.max_pixels = max_pixels
        """Images above this many pixels are errors (None: the pipeline's cap, ``$COTEMBED_MAX_PIXELS``)."""
        self.prompt_bank = PromptBank(encoder, self.cache, progress)
        self.compiled = system.compile()
        self.classes_ = np.asarray(self.compiled.class_names, dtype=object)
        self._scorers: dict[tuple[str, ...], Scorer] = {}
        self.calibration_failures = 0
        """Calibration inputs that could not be used (see :meth:`calibrated`)."""
        self.scored_with: ScoringMethod | None = None
        """The method object :meth:`classify_samples` last scored with (fitted on that batch, if it learns from one)."""
        self.transductive = bool(transductive)
        """Every method's posterior is refined on the unlabelled batch it classifies (see :mod:`cotembed._examples`)."""
        self.examples_report: Any = None
        """Where the few-shot methods' examples came from and what was left out (:class:`cotembed._examples.ExamplesReport`)."""
        if examples is not None:
            from cotembed._examples import fit_examples

            options, self.examples_report = fit_examples(self, examples)
            self.config = ScoringConfig(self.config.temperature, self.config.hybrid_weight, options)

    @property
    def temperature(self) -> float:
        return self.config.temperature

    @property
    def hybrid_weight(self) -> float:
        return self.config.hybrid_weight

    # -------------------------------------------------------------- scoring
    def scorer_for(self, methods: Sequence[str]) -> Scorer:
        """A scorer for these methods; prompts are embedded through the prompt bank on first use."""
        key = tuple(dict.fromkeys(methods))
        if key not in self._scorers:
            from cotembed._examples import configured_methods

            self._scorers[key] = Scorer.build(self.system, self.prompt_bank.embed, self.config, configured_methods(self, key))
        return self._scorers[key]

    @property
    def scorer(self) -> Scorer:
        return self.scorer_for((self.method,))

    @property
    def scoring_method(self) -> ScoringMethod:
        """The configured method object predictions use."""
        return self.config.method(self.method)

    def calibrated(self, samples: Sequence[Sample], methods: Sequence[str] | None = None,
                   use_labels: bool = True) -> "CoTClassifier":
        """A copy whose methods are fitted on calibration samples (embedded through the cache).

        Labels are counted where every sample has one (unless ``use_labels`` is false);
        otherwise methods fit without them. Methods that learn nothing from data are
        unchanged; if none of ``methods`` learns anything, that is an InputError.
        Inputs that fail to load are left out (``calibration_failures`` counts them).
        """
        names = tuple(dict.fromkeys(methods or (self.method,)))
        data = self.embedding_set(samples)
        if not len(data):
            why = f": {data.errors[0].source}: {data.errors[0].error}" if data.errors else ""
            raise InputError(f"calibration: no usable input{why}")
        labelled = use_labels and all(label is not None for label in data.labels)
        if use_labels and not labelled and any(label is not None for label in data.labels):
            missing = next(s for s, label in zip(data.sources, data.labels) if label is None)
            raise InputError(f"calibration: some inputs have labels and some do not (e.g. {missing}); "
                             "label all of them, or ignore the labels")
        scorer = self.scorer_for(names)
        labels = data.label_indices(self.compiled.class_names) if labelled else None
        options = dict(self.config.method_options)
        learnt = False
        for name in names:
            method = scorer.method(name)
            fitted = method.fit([batch for _, batch in scorer.batches(data.embeddings, (name,))], labels)
            if fitted is not method:
                learnt = True
                options.update({fitted.option_prefix + k: v for k, v in fitted.params.items() if v is not None})
        if not learnt:
            raise InputError(f"calibration data: none of the methods {', '.join(names)} learns from it")
        clf = CoTClassifier(self.system, self.encoder, self.method, self.temperature, self.hybrid_weight, self.cache,
                            self.batch_size, self.progress, options, self.max_pixels, self.config.probabilities,
                            self.decisions, transductive=self.transductive)
        clf.examples_report = self.examples_report
        clf.calibration_failures = len(data.errors)
        return clf

    # --------------------------------------------------------------- inputs
    def _samples(self, inputs: Any = None, images: Any = None, texts: Any = None) -> list[Sample]:
        given = [x is not None for x in (inputs, images, texts)]
        if sum(given) != 1:
            raise InputError("give exactly one of: inputs, images=..., texts=...")
        if texts is not None:
            return text_samples([texts] if isinstance(texts, str) else [str(t) for t in texts])
        if images is not None:
            return _image_samples([images] if isinstance(images, _ONE_IMAGE) else list(images))
        items = [inputs] if isinstance(inputs, _ONE_IMAGE) else list(inputs)
        if all(isinstance(x, str) for x in items):
            modalities = set(self.encoder.modalities)
            if modalities == {"text"}:
                return text_samples([str(x) for x in items])
            if "text" in modalities:
                raise InputError(
                    f"model {self.encoder.model_key} takes images and texts, so plain strings are ambiguous: "
                    "call with texts=[...] for texts or images=[...] for image paths"
                )
        return _image_samples(items)

    def embed(self, inputs: Any = None, *, images: Any = None, texts: Any = None) -> np.ndarray:
        """Embeddings of the inputs (cached); raises if any input cannot be used."""
        return self._embed_samples(self._samples(inputs, images, texts))

    def _embed_samples(self, samples: list[Sample]) -> np.ndarray:
        data = self.embedding_set(samples)
        if data.errors:
            raise InputError("; ".join(f"{e.source}: {e.error}" for e in data.errors))
        return data.embeddings

    def embedding_set(self, samples: Sequence[Sample], skipped: Sequence[Sample] = ()) -> EmbeddingSet:
        """Embeddings of collected samples through the cache; failed inputs are kept as errors."""
        return EmbeddingSet.from_samples(samples, self.encoder, self.cache, self.batch_size, self.progress, skipped,
                                         max_pixels=self.max_pixels)

    # ------------------------------------------------------------ public API
    def decision_function(self, inputs: Any = None, *, images: Any = None, texts: Any = None) -> np.ndarray:
        """Raw class scores (B, N): cosines for baseline, summed probabilities for CoT."""
        return self.scores_from_embeddings(self.embed(inputs, images=images, texts=texts))

    def scores_from_embeddings(self, embeddings: np.ndarray, method: str | None = None) -> np.ndarray:
        """Score precomputed input embeddings (B, D) -> (B, N); no model call for the inputs.

        The embeddings are one batch: a method that learns from the unlabelled batch
        (adaptive's answer model) is fitted on them first.
        """
        name = method or self.method
        method_class(name)
        return self.scorer_for((name,)).prepare(embeddings).scores(embeddings, name)

    def predict(self, inputs: Any = None, *, images: Any = None, texts: Any = None) -> list[str | None]:
        """Top class per input; None where the classifier abstains (see :meth:`with_abstention`)."""
        return [p.prediction for p in self.classify(inputs, images=images, texts=texts, top_k=1)]

    def predict_proba(self, inputs: Any = None, *, images: Any = None, texts: Any = None) -> np.ndarray:
        """(B, N) probabilities in ``classes_`` order; rows sum to 1.

        The calibrated posterior by default; ``probabilities="normalised"`` gives the
        scores rescaled to sum to 1 (the first releases' output).
        """
        return self.scored(self.embed(inputs, images=images, texts=texts)).probabilities

    def fit_score(self, inputs: Any = None, *, images: Any = None, texts: Any = None) -> np.ndarray:
        """(B,) absolute fit score of each input's predicted class (``decisions.fit_score`` names which)."""
        fit = self.scored(self.embed(inputs, images=images, texts=texts)).fit
        assert fit is not None  # the decision scorer always embeds the option prompts
        return fit

    def classify(self, inputs: Any = None, *, images: Any = None, texts: Any = None, top_k: int = 3) -> list[Prediction]:
        """Full results per input (probability, fit score, abstention, set, labels); raises if an input fails."""
        predictions, errors = self.classify_samples(self._samples(inputs, images, texts), top_k)
        if errors:
            raise InputError("; ".join(f"{e.source}: {e.error}" for e in errors))
        return predictions

    # ------------------------------------------------------------ decisions
    @property
    def decision_scorer(self) -> Scorer:
        """The method's scorer, with the system's option prompts (fit scores need them)."""
        return self.scorer_for((self.method, "cot"))

    def scored(self, embeddings: np.ndarray, support: bool | None = None) -> Scored:
        """Scores, probabilities and fit scores of precomputed embeddings (one batch: transductive
        methods are fitted on it, without labels)."""
        scorer = self.decision_scorer.prepare(np.atleast_2d(embeddings))
        wants = self.decisions.multilabel is not None if support is None else support
        return score_embeddings(scorer, embeddings, self.method, self.decisions.fit_score, wants)

    def using(self, method: str) -> "CoTClassifier":
        """A copy that scores with another registered method (same model, cache, temperature and decisions)."""
        method_class(method)
        if method == self.method:
            return self
        clf = copy.copy(self)
        clf.method, clf.scored_with = method, None
        return clf

    def on_system(self, system: System) -> "CoTClassifier":
        """A classifier for another system with this one's model, cache and temperature (fit score kept;
        thresholds are not: they belong to this system)."""
        return CoTClassifier(system, self.encoder, self.method, self.temperature, self.hybrid_weight, self.cache,
                             self.batch_size, self.progress, dict(self.config.method_options), self.max_pixels,
                             self.config.probabilities, Decisions(fit_score=self.decisions.fit_score))

    def _with(self, decisions: Decisions) -> "CoTClassifier":
        clf = copy.copy(self)
        clf.decisions = decisions
        return clf

    def _labelled(self, data: Any, what: str) -> tuple[Scored, np.ndarray]:
        """Scored labelled data (samples, or folders/manifests) and its class indices."""
        from cotembed.data import resolve_labels

        samples, _ = resolve_labels(_given_samples(data), self.system.resolve_label)
        unlabelled = [x.source for x in samples if x.label is None]
        if unlabelled or not samples:
            raise InputError(f"{what}: needs labelled inputs" + (f"; {unlabelled[0]} has no label" if unlabelled else ""))
        embedded = self.embedding_set(samples)
        if not len(embedded):
            raise InputError(f"{what}: no usable input")
        self.calibration_failures = len(embedded.errors)
        return self.scored(embedded.embeddings, support=False), embedded.label_indices(self.compiled.class_names)

    def with_fit_score(self, name: str) -> "CoTClassifier":
        """A copy whose predictions carry the fit score ``name`` (``log rule support``, ``rule support`` or ``energy``)."""
        if self.decisions.abstention is not None:
            raise InputError("choose the fit score before the abstention threshold (thresholds belong to one score)")
        return self._with(replace(self.decisions, fit_score=check_fit_score(name)))

    def with_abstention(self, threshold: float | None = None, *, target: str | None = None, data: Any = None) -> "CoTClassifier":
        """A copy that abstains when the top class's fit score is below a threshold: ``threshold``
        given, or chosen on labelled ``data`` for ``target`` (``"precision=0.95"`` / ``"coverage=0.9"``)."""
        if (threshold is None) == (target is None):
            raise InputError("abstain: give a threshold, or a target with labelled data")
        if threshold is not None:
            abstention = Abstention(threshold, self.decisions.fit_score)
        else:
            if data is None:
                raise InputError(f"abstain target {target}: labelled data is needed to choose the threshold")
            scored, labels = self._labelled(data, "abstain data")
            assert scored.fit is not None
            abstention = Abstention.for_target(str(target), scored.fit, scored.predicted == labels, self.decisions.fit_score)
        return self._with(replace(self.decisions, abstention=abstention))

    def with_conformal(self, alpha: float, data: Any, score: str = "lac", seed: int = 0) -> "CoTClassifier":
        """A copy whose predictions carry a set of classes that holds the true one with probability
        >= 1 - alpha, calibrated (split conformal) on labelled ``data`` exchangeable with the inputs."""
        SplitConformal(alpha, score=score)  # a bad alpha or score is refused before any input is embedded
        scored, labels = self._labelled(data, "conformal data")
        conformal = fit_conformal(alpha, scored.probabilities, labels, score, self.compiled.class_names, seed)
        if not math.isfinite(conformal.threshold):
            need = math.ceil(1 / alpha) - 1
            raise InputError(f"alpha {alpha:g} with {len(labels)} calibration inputs gives no finite threshold (every set "
                             f"would hold every class): give at least {need} inputs, or a larger alpha")
        return self._with(replace(self.decisions, conformal=conformal))

    def with_multilabel(self, threshold: float | None = None, *, data: Any = None, per_class: bool = True) -> "CoTClassifier":
        """A copy that names every class whose own rule support reaches its threshold: ``threshold``
        given (global), or chosen on labelled ``data`` to maximise F1 (per class by default).

        ``data``: samples whose label names one class or several separated by ``;``."""
        n = self.compiled.n_classes
        if (threshold is None) == (data is None):
            raise InputError("multi-label: give a threshold, or labelled data to choose thresholds on")
        if threshold is not None:
            thresholds = given_threshold(threshold, n)
        else:
            embedded = self.embedding_set(_given_samples(data))
            if not len(embedded):
                raise InputError("multi-label data: no usable input")
            targets = multilabel_targets(embedded.labels, self.compiled.class_names, self.system.resolve_label)
            scored = self.scored(embedded.embeddings, support=True)
            assert scored.support is not None
            thresholds = fit_thresholds(scored.support, targets, per_class=per_class)
        return self._with(replace(self.decisions, multilabel=thresholds))

    def with_examples(self, examples: Any, methods: Sequence[str] | None = None, ignore_unknown: bool = False,
                      inputs: Sequence[Sample] = (), allow_outside: bool = False) -> "CoTClassifier":
        """A copy whose few-shot methods (prototype, gda, fused) are fitted on labelled examples.

        ``examples``: folders or manifests (paths), samples, or an :class:`EmbeddingSet` of the
        same model. See :func:`cotembed._examples.fit_examples` for the checks (unknown labels,
        classes without examples, leakage into ``inputs``, another model's embeddings).
        """
        from cotembed._examples import fit_examples

        clf = CoTClassifier(self.system, self.encoder, self.method, self.temperature, self.hybrid_weight, self.cache,
                            self.batch_size, self.progress, dict(self.config.method_options), self.max_pixels,
                            self.config.probabilities, self.decisions, transductive=self.transductive)
        clf.prompt_bank = self.prompt_bank
        options, clf.examples_report = fit_examples(clf, examples, methods, ignore_unknown, inputs,
                                                    allow_outside=allow_outside)
        clf.config = ScoringConfig(self.config.temperature, self.config.hybrid_weight, options, self.config.probabilities)
        clf.calibration_failures = self.calibration_failures
        return clf

    def labelled_embedding_set(self, samples: Sequence[Sample], skipped: Sequence[Sample] = ()) -> EmbeddingSet:
        """:meth:`embedding_set` for evaluation: every sample must carry a label."""
        unlabelled = [s.source for s in samples if s.label is None]
        if unlabelled:
            raise InputError(f"eval needs labels; {len(unlabelled)} input(s) have none, e.g. {unlabelled[0]}")
        if not samples:
            raise InputError("eval: no labelled inputs to evaluate")
        return self.embedding_set(samples, skipped)

    def evaluate(self, samples: Sequence[Sample], methods: Sequence[str] | None = None, skipped: Sequence[Sample] = ()) -> EvalReport:
        """Metrics of several methods from one encoding pass (see :func:`cotembed.evaluation._evaluate.evaluate`)."""
        names = tuple(methods) if methods is not None else (self.method,)
        for name in names:
            method_class(name)
        scorer = self.scorer_for(names)
        return evaluate(scorer, self.labelled_embedding_set(samples, skipped), names)

    def classify_samples(self, samples: Sequence[Sample], top_k: int = 3) -> tuple[list[Prediction], list[SampleError]]:
        """Streamed classification of collected samples; failed inputs are returned, not raised."""
        predictions: list[Prediction] = []
        errors: list[SampleError] = []
        scorer = self.decision_scorer
        # A method that learns from the batch itself needs every embedding before the first score.
        whole_batch = scorer.method(self.method).transductive(len(samples), self.compiled)
        held: list[tuple[list[Sample], np.ndarray]] = []
        wants_support = self.decisions.multilabel is not None

        def emit(batch_samples: Sequence[Sample], scored: Scored) -> None:
            predictions.extend(self._predictions(batch_samples, scored, top_k))

        for batch in stream_embeddings(samples, self.encoder, self.cache, self.batch_size, self.progress, "classify",
                                       max_pixels=self.max_pixels):
            errors.extend(batch.errors)
            if not batch.samples:
                continue
            if whole_batch:
                held.append((list(batch.samples), batch.embeddings))
            else:
                emit(batch.samples, score_embeddings(scorer, batch.embeddings, self.method, self.decisions.fit_score,
                                                     wants_support))
        self.scored_with = scorer.method(self.method)
        if held:
            embeddings = np.concatenate([e for _, e in held])
            prepared = scorer.prepare(embeddings)
            self.scored_with = prepared.method(self.method)
            emit([s for part, _ in held for s in part],
                 score_embeddings(prepared, embeddings, self.method, self.decisions.fit_score, wants_support))
        return predictions, errors

    def _predictions(self, samples: Sequence[Sample], scored: Scored, top_k: int) -> list[Prediction]:
        """Per input: top classes, probability, fit score, and the decisions in force."""
        return predictions_of(samples, scored, top_k, self.classes_, self.decisions)

    def explain(self, item: Any = None, *, image: Any = None, text: Any = None, top_k: int = 5) -> Explanation:
        """Each question's answer distribution and the top classes with per-group contributions."""
        samples = self._samples(item, image, text)
        if len(samples) != 1:
            raise InputError(f"explain takes one input, got {len(samples)}")
        embedding = self._embed_samples(samples)
        scorer = self.scorer_for((self.method, "hybrid"))
        batch = scorer.batch(embedding)
        probs = batch.option_probs[0]
        method = scorer.method(self.method)
        all_scores = method.score(batch)
        scores = all_scores[0]
        probabilities = class_probabilities(method, batch, all_scores)[0]
        fit = fit_scores(batch, all_scores.argmax(axis=1), self.decisions.fit_score)[0]
        offsets = self.compiled.offsets
        questions = []
        for g, group in enumerate(self.system.groups):
            p = probs[offsets[g] : offsets[g + 1]]
            questions.append(
                QuestionAnswer(group.name, group.prompt, group.options[int(p.argmax())], {o: float(v) for o, v in zip(group.options, p)})
            )
        terms = method.terms(batch) or {}
        order = np.argsort(-scores, kind="stable")[: max(1, top_k)]
        top = [
            ClassEvidence(str(self.classes_[n]), float(scores[n]), {part: float(values[0, n]) for part, values in terms.items()},
                          float(probabilities[n]))
            for n in (int(i) for i in order)
        ]
        return Explanation(
            source=samples[0].source,
            method=self.method,
            prediction=str(self.classes_[order[0]]),
            questions=questions,
            top=top,
            model=self.encoder.model_key,
            system_hash=self.system.fingerprint,
            temperature=self.temperature,
            detail=method.explain(batch, [g.options for g in self.system.groups]),
            probabilities=self.config.probabilities,
            fit_score=float(fit),
            fit_score_name=self.decisions.fit_score,
        )


def _given_samples(data: Any) -> list[Sample]:
    """Samples as given, or collected from folders/manifests (a path or a list of paths)."""
    from cotembed.data import collect_samples

    items = [data] if isinstance(data, (str, Path)) else list(data)
    if all(isinstance(x, Sample) for x in items):
        return [x for x in items if isinstance(x, Sample)]
    return collect_samples([str(x) for x in items])
_ONE_IMAGE = (str, Path, Image.Image, bytes, bytearray, Sample)
"""What a single input may be given as, not in a list (a ``str`` is a path, or a text for a text model)."""


def _image_samples(items: Sequence[Any]) -> list[Sample]:
    samples = []
    for i, x in enumerate(items):
        if isinstance(x, (str, Path)):
            samples.append(Sample(source=str(x), kind="image", path=Path(x)))
        elif isinstance(x, (bytes, bytearray)):
            samples.append(Sample.from_bytes(bytes(x), f"image[{i}]"))
        elif isinstance(x, Image.Image):
            samples.append(Sample.from_bytes(_png_bytes(x), f"image[{i}]"))
        elif isinstance(x, Sample) and x.kind == "image":
            samples.append(x)
        else:
            raise InputError(f"input {i}: expected an image path, its bytes, a PIL image or an image Sample, got {type(x).__name__}")
    return samples


def _png_bytes(image: Image.Image) -> bytes:
    """A PIL image as PNG bytes, its EXIF kept: an image opened from a photo and not yet
    turned upright is turned by the decoder as the photo's file would be."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", exif=image.getexif())
    return buf.getvalue()


__all__ = ["ClassEvidence", "CoTClassifier", "Explanation", "Prediction", "QuestionAnswer", "resolve_temperature"]
