"""CoTClassifier: a system plus a frozen encoder, with a scikit-learn-style API.

It composes the pieces that also work on their own: a :class:`PromptBank` (prompt
texts -> vectors, each encoded once per model), a :class:`Scorer` (pure numpy) and the
cached streaming pipeline for inputs. Every prediction can explain itself.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from cotembed.cache import EmbeddingStore, NoCache
from cotembed.data import Sample, text_samples
from cotembed.embeddings import EmbeddingSet, PromptBank
from cotembed.encoders.base import Encoder
from cotembed.errors import InputError
from cotembed.evaluate import EvalReport, evaluate
from cotembed.pipeline import SampleError, stream_embeddings
from cotembed.scoring import DEFAULT_TEMPERATURE, Scorer, ScoringConfig, ScoringMethod, method_class
from cotembed.system import System


def resolve_temperature(explicit: float | None, system: System, encoder: Encoder | None) -> float:
    """Caller's value, else the system's, else the model's logit scale, else CLIP's 100."""
    for value in (explicit, system.temperature, getattr(encoder, "logit_scale", None) if encoder is not None else None):
        if value is not None:
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"temperature must be a positive finite number, got {value}")
            return float(value)
    return DEFAULT_TEMPERATURE


@dataclass(frozen=True)
class Prediction:
    source: str
    prediction: str
    score: float
    top: list[tuple[str, float]]
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"input": self.source, "prediction": self.prediction, "score": self.score}
        if self.label is not None:
            out["label"] = self.label
        out["top"] = [{"class": c, "score": s} for c, s in self.top]
        return out


@dataclass(frozen=True)
class QuestionAnswer:
    group: str
    prompt: str
    answer: str
    probabilities: dict[str, float]


@dataclass(frozen=True)
class ClassEvidence:
    class_name: str
    score: float
    contributions: dict[str, float]
    """The method's additive parts of the score (per question for cot, cot-log, hybrid;
    hybrid adds ``class name``); empty for methods whose score does not split."""


@dataclass(frozen=True)
class Explanation:
    source: str
    method: str
    prediction: str
    questions: list[QuestionAnswer]
    top: list[ClassEvidence]
    model: str
    system_hash: str
    temperature: float
    detail: Any = None
    """The method's own account of this input (adaptive: the questions asked, in order), or None."""

    def to_dict(self) -> dict[str, Any]:
        detail = {} if self.detail is None else {self.method: self.detail.to_dict()}
        return {
            "input": self.source,
            "method": self.method,
            "prediction": self.prediction,
            "model": self.model,
            "system_hash": self.system_hash,
            "temperature": self.temperature,
            "questions": [
                {"group": q.group, "prompt": q.prompt, "answer": q.answer, "probabilities": q.probabilities}
                for q in self.questions
            ],
            "top": [{"class": c.class_name, "score": c.score, "contributions": c.contributions} for c in self.top],
            **detail,
        }


class CoTClassifier:
    """Classify images or texts with a frozen encoder and a classification system.

    >>> clf = CoTClassifier(System.load("system.yaml"), load_encoder("minilm"))  # doctest: +SKIP
    >>> clf.predict(texts=["a crimson winged thing over lava"])                  # doctest: +SKIP

    The modality is explicit: ``predict(images=[...])`` or ``predict(texts=[...])``.
    A positional argument is accepted where it cannot be misread: PIL images and
    ``Path`` objects are images, and strings are texts for a text-only model and
    image paths for an image-only one.
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
        examples: Any = None,
        transductive: bool = False,
    ):
        method_class(method)
        self.system = system
        self.encoder = encoder
        self.method = method
        self.config = ScoringConfig(resolve_temperature(temperature, system, encoder), float(hybrid_weight), dict(method_options or {}))
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
        """Every method's posterior is refined on the unlabelled batch it classifies (see :mod:`cotembed.examples`)."""
        self.examples_report: Any = None
        """Where the few-shot methods' examples came from and what was left out (:class:`cotembed.examples.ExamplesReport`)."""
        if examples is not None:
            from cotembed.examples import fit_examples

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
            from cotembed.examples import configured_methods

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
                            self.batch_size, self.progress, options, self.max_pixels, transductive=self.transductive)
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
            return _image_samples([images] if isinstance(images, (str, Path, Image.Image)) else list(images))
        items = [inputs] if isinstance(inputs, (str, Path, Image.Image)) else list(inputs)
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

    def predict(self, inputs: Any = None, *, images: Any = None, texts: Any = None) -> list[str]:
        scores = self.decision_function(inputs, images=images, texts=texts)
        return [str(self.classes_[i]) for i in scores.argmax(axis=1)]

    def predict_proba(self, inputs: Any = None, *, images: Any = None, texts: Any = None) -> np.ndarray:
        """(B, N) probabilities in ``classes_`` order; rows sum to 1."""
        embeddings = self.embed(inputs, images=images, texts=texts)
        scorer = self.scorer.prepare(embeddings)  # as scored: fitted on the batch, for methods that learn from it
        return scorer.method(self.method).probabilities(scorer.scores(embeddings, self.method), self.config)

    def with_examples(self, examples: Any, methods: Sequence[str] | None = None, ignore_unknown: bool = False,
                      inputs: Sequence[Sample] = (), allow_outside: bool = False) -> "CoTClassifier":
        """A copy whose few-shot methods (prototype, gda, fused) are fitted on labelled examples.

        ``examples``: folders or manifests (paths), samples, or an :class:`EmbeddingSet` of the
        same model. See :func:`cotembed.examples.fit_examples` for the checks (unknown labels,
        classes without examples, leakage into ``inputs``, another model's embeddings).
        """
        from cotembed.examples import fit_examples

        clf = CoTClassifier(self.system, self.encoder, self.method, self.temperature, self.hybrid_weight, self.cache,
                            self.batch_size, self.progress, dict(self.config.method_options), self.max_pixels,
                            transductive=self.transductive)
        clf.prompt_bank = self.prompt_bank
        options, clf.examples_report = fit_examples(clf, examples, methods, ignore_unknown, inputs,
                                                    allow_outside=allow_outside)
        clf.config = ScoringConfig(self.config.temperature, self.config.hybrid_weight, options)
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
        """Metrics of several methods from one encoding pass (see :func:`cotembed.evaluate.evaluate`)."""
        names = tuple(methods) if methods is not None else (self.method,)
        for name in names:
            method_class(name)
        scorer = self.scorer_for(names)
        return evaluate(scorer, self.labelled_embedding_set(samples, skipped), names)

    def classify_samples(self, samples: Sequence[Sample], top_k: int = 3) -> tuple[list[Prediction], list[SampleError]]:
        """Streamed classification of collected samples; failed inputs are returned, not raised."""
        predictions: list[Prediction] = []
        errors: list[SampleError] = []
        scorer = self.scorer
        # A method that learns from the batch itself needs every embedding before the first score.
        whole_batch = scorer.method(self.method).transductive(len(samples), self.compiled)
        held: list[tuple[list[Sample], np.ndarray]] = []

        def emit(batch_samples: Sequence[Sample], scores: np.ndarray) -> None:
            order = np.argsort(-scores, axis=1, kind="stable")[:, : max(1, top_k)]
            for sample, row, idx in zip(batch_samples, scores, order):
                top = [(str(self.classes_[i]), float(row[i])) for i in idx]
                predictions.append(Prediction(sample.source, top[0][0], top[0][1], top, sample.label))

        for batch in stream_embeddings(samples, self.encoder, self.cache, self.batch_size, self.progress, "classify",
                                       max_pixels=self.max_pixels):
            errors.extend(batch.errors)
            if not batch.samples:
                continue
            if whole_batch:
                held.append((list(batch.samples), batch.embeddings))
            else:
                emit(batch.samples, scorer.scores(batch.embeddings, self.method))
        self.scored_with = scorer.method(self.method)
        if held:
            embeddings = np.concatenate([e for _, e in held])
            prepared = scorer.prepare(embeddings)
            self.scored_with = prepared.method(self.method)
            emit([s for part, _ in held for s in part], prepared.scores(embeddings, self.method))
        return predictions, errors

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
        scores = method.score(batch)[0]
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
            ClassEvidence(str(self.classes_[n]), float(scores[n]), {part: float(values[0, n]) for part, values in terms.items()})
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
        )


def _image_samples(items: Sequence[Any]) -> list[Sample]:
    samples = []
    for i, x in enumerate(items):
        if isinstance(x, (str, Path)):
            samples.append(Sample(source=str(x), kind="image", path=Path(x)))
        elif isinstance(x, Image.Image):
            samples.append(Sample(source=f"image[{i}]", kind="image", path=_InMemoryImage(x)))  # type: ignore[arg-type]
        else:
            raise InputError(f"input {i}: expected an image path or a PIL image, got {type(x).__name__}")
    return samples


class _InMemoryImage:
    """Lets a PIL image travel the file-based pipeline: ``read_bytes`` returns PNG bytes."""

    def __init__(self, image: Image.Image):
        self.image = image

    def read_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.image.save(buf, format="PNG")
        return buf.getvalue()

    def __str__(self) -> str:
        return "<PIL image>"


__all__ = ["ClassEvidence", "CoTClassifier", "Explanation", "Prediction", "QuestionAnswer", "resolve_temperature"]
