"""CoTClassifier: a system plus a frozen encoder, with a scikit-learn-style API.

The classifier embeds the system's prompts once (cached per model and prompt),
streams inputs through the cached encoding pipeline, and scores with the pure
functions of :mod:`cotembed.scoring`. Every prediction can explain itself.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from cotembed import scoring
from cotembed.cache import EmbeddingStore, NoCache
from cotembed.data import Sample, text_samples
from cotembed.encoders.base import Encoder
from cotembed.errors import InputError
from cotembed.pipeline import SampleError, embed_texts, stream_embeddings
from cotembed.scoring import Method
from cotembed.system import CompiledSystem, System


SCORING_CHUNK = 2048
"""Rows scored at once: large enough for BLAS, small enough to keep B x Q temporaries in cache."""


def resolve_temperature(explicit: float | None, system: System, encoder: Encoder) -> float:
    """Caller's value, else the system's, else the model's logit scale, else CLIP's 100."""
    for value in (explicit, system.temperature, getattr(encoder, "logit_scale", None)):
        if value is not None:
            if not value > 0:
                raise InputError(f"temperature must be positive, got {value}")
            return float(value)
    return scoring.DEFAULT_TEMPERATURE


@dataclass
class Scorer:
    """A compiled system with its prompt embeddings: scores any batch of input embeddings."""

    compiled: CompiledSystem
    prompt_embeddings: np.ndarray
    name_embeddings: np.ndarray
    temperature: float
    hybrid_weight: float = 1.0

    def similarities(self, embeddings: np.ndarray, method: Method = "hybrid") -> tuple[np.ndarray, np.ndarray | None]:
        """Cosines to the Q option prompts and (unless the method is pure CoT) the N class names."""
        x = scoring.l2_normalize(embeddings)
        names = None if method == "cot" else x @ self.name_embeddings.T
        return x @ self.prompt_embeddings.T, names

    def option_probabilities(self, prompt_sims: np.ndarray) -> np.ndarray:
        return scoring.group_softmax(prompt_sims, self.compiled.offsets, self.temperature)

    def scores(self, method: Method, prompt_sims: np.ndarray, name_sims: np.ndarray | None, probs: np.ndarray | None = None) -> np.ndarray:
        if method == "baseline":
            assert name_sims is not None
            return name_sims
        probs = self.option_probabilities(prompt_sims) if probs is None else probs
        cot = scoring.cot_scores(probs, self.compiled.rule_matrix)
        if method == "cot":
            return cot
        assert name_sims is not None
        return scoring.hybrid_scores(cot, name_sims, self.temperature, self.hybrid_weight)


def prompts_used(method: Method, compiled: CompiledSystem) -> int:
    """Text embeddings a method needs: N for baseline, Q for CoT, Q + N for hybrid."""
    return {"baseline": compiled.n_classes, "cot": compiled.n_prompts, "hybrid": compiled.n_prompts + compiled.n_classes}[method]


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
    """Per group: weight x probability of the class's option(s); hybrid adds ``class name``."""


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

    def to_dict(self) -> dict[str, Any]:
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
        }


class CoTClassifier:
    """Classify images or texts with a frozen encoder and a classification system.

    >>> clf = CoTClassifier(System.load("system.yaml"), load_encoder("minilm"))  # doctest: +SKIP
    >>> clf.predict(["a crimson winged thing over lava"])                        # doctest: +SKIP
    """

    def __init__(
        self,
        system: System,
        encoder: Encoder,
        method: Method = "cot",
        temperature: float | None = None,
        hybrid_weight: float = 1.0,
        cache: EmbeddingStore | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ):
        if method not in scoring.METHODS:
            raise InputError(f"unknown method {method!r}: choose one of {', '.join(scoring.METHODS)}")
        if not hybrid_weight >= 0:
            raise InputError(f"hybrid weight must be >= 0, got {hybrid_weight}")
        self.system = system
        self.encoder = encoder
        self.method: Method = method
        self.temperature = resolve_temperature(temperature, system, encoder)
        self.hybrid_weight = float(hybrid_weight)
        self.cache = cache if cache is not None else NoCache()
        self.batch_size = batch_size
        self.progress = progress
        self.compiled = system.compile()
        self.classes_ = np.asarray(self.compiled.class_names, dtype=object)
        self._scorer: Scorer | None = None

    # -------------------------------------------------------------- internals
    @property
    def scorer(self) -> Scorer:
        """Embeds the Q option prompts and N class-name prompts on first use."""
        if self._scorer is None:
            prompts = embed_texts(self.compiled.prompts, self.encoder, self.cache)
            names = embed_texts(self.compiled.baseline_prompts, self.encoder, self.cache)
            self._scorer = Scorer(
                self.compiled,
                scoring.l2_normalize(prompts),
                scoring.l2_normalize(names),
                self.temperature,
                self.hybrid_weight,
            )
        return self._scorer

    def _samples(self, inputs: Sequence[Any]) -> list[Sample]:
        if isinstance(inputs, (str, Path, Image.Image)):
            inputs = [inputs]
        if all(isinstance(x, str) for x in inputs) and "image" not in self.encoder.modalities:
            return text_samples(list(inputs))
        samples = []
        for i, x in enumerate(inputs):
            if isinstance(x, (str, Path)):
                samples.append(Sample(source=str(x), kind="image", path=Path(x)))
            elif isinstance(x, Image.Image):
                samples.append(Sample(source=f"image[{i}]", kind="image", path=_InMemoryImage(x)))  # type: ignore[arg-type]
            else:
                raise InputError(f"input {i}: expected an image path, a PIL image or a text, got {type(x).__name__}")
        return samples

    def embed(self, inputs: Sequence[Any]) -> np.ndarray:
        """Embeddings of the inputs (cached); raises if any input cannot be used."""
        return self._embed_samples(self._samples(inputs))

    def _embed_samples(self, samples: list[Sample]) -> np.ndarray:
        chunks: list[np.ndarray] = []
        errors: list[SampleError] = []
        for batch in stream_embeddings(samples, self.encoder, self.cache, self.batch_size, self.progress):
            errors.extend(batch.errors)
            if len(batch.samples):
                chunks.append(batch.embeddings)
        if errors:
            raise InputError("; ".join(f"{e.source}: {e.error}" for e in errors))
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)

    # ------------------------------------------------------------ public API
    def decision_function(self, inputs: Sequence[Any]) -> np.ndarray:
        """Raw class scores (B, N): cosines for baseline, summed probabilities otherwise."""
        return self.scores_from_embeddings(self.embed(inputs))

    def scores_from_embeddings(self, embeddings: np.ndarray, method: Method | None = None) -> np.ndarray:
        """Score precomputed input embeddings (B, D) -> (B, N); no model call.

        Works in chunks so that re-scoring many cached embeddings keeps temporaries small.
        """
        method = method or self.method
        embeddings = np.atleast_2d(embeddings)
        out = np.empty((len(embeddings), self.compiled.n_classes), dtype=np.float32)
        for start in range(0, len(embeddings), SCORING_CHUNK):
            prompt_sims, name_sims = self.scorer.similarities(embeddings[start : start + SCORING_CHUNK], method)
            out[start : start + SCORING_CHUNK] = self.scorer.scores(method, prompt_sims, name_sims)
        return out

    def predict(self, inputs: Sequence[Any]) -> list[str]:
        scores = self.decision_function(inputs)
        return [str(self.classes_[i]) for i in scores.argmax(axis=1)]

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        """(B, N) probabilities in ``classes_`` order; rows sum to 1."""
        return scoring.normalize_scores(self.decision_function(inputs), self.method, self.temperature)

    def classify_samples(self, samples: Sequence[Sample], top_k: int = 3) -> tuple[list[Prediction], list[SampleError]]:
        """Streamed classification of collected samples; failed inputs are returned, not raised."""
        predictions: list[Prediction] = []
        errors: list[SampleError] = []
        for batch in stream_embeddings(samples, self.encoder, self.cache, self.batch_size, self.progress, "classify"):
            errors.extend(batch.errors)
            if not batch.samples:
                continue
            scores = self.scores_from_embeddings(batch.embeddings)
            order = np.argsort(-scores, axis=1, kind="stable")[:, : max(1, top_k)]
            for sample, row, idx in zip(batch.samples, scores, order):
                top = [(str(self.classes_[i]), float(row[i])) for i in idx]
                predictions.append(Prediction(sample.source, top[0][0], top[0][1], top, sample.label))
        return predictions, errors

    def explain(self, item: Any, top_k: int = 5) -> Explanation:
        """Each question's answer distribution and the top classes with per-group contributions."""
        samples = self._samples([item])
        embedding = self._embed_samples(samples)
        prompt_sims, name_sims = self.scorer.similarities(embedding, "hybrid")
        assert name_sims is not None  # "hybrid" always computes them
        probs = self.scorer.option_probabilities(prompt_sims)[0]
        scores = self.scorer.scores(self.method, prompt_sims, name_sims, probs[None, :])[0]
        offsets = self.compiled.offsets
        questions = []
        for g, group in enumerate(self.system.groups):
            p = probs[offsets[g] : offsets[g + 1]]
            questions.append(
                QuestionAnswer(group.name, group.prompt, group.options[int(p.argmax())], {o: float(v) for o, v in zip(group.options, p)})
            )
        name_probs = scoring.softmax(name_sims[0] * np.float32(self.temperature))
        order = np.argsort(-scores, kind="stable")[: max(1, top_k)]
        top = [self._evidence(int(n), float(scores[n]), probs, float(name_probs[n])) for n in order]
        return Explanation(
            source=samples[0].source,
            method=self.method,
            prediction=str(self.classes_[order[0]]),
            questions=questions,
            top=top,
            model=self.encoder.model_key,
            system_hash=self.system.hash,
            temperature=self.temperature,
        )

    def _evidence(self, n: int, score: float, probs: np.ndarray, name_prob: float) -> ClassEvidence:
        cls_name = str(self.classes_[n])
        contributions: dict[str, float] = {}
        if self.method != "baseline":
            # The class's column of the rule matrix, summed per group: exactly its CoT score terms.
            per_group = np.add.reduceat(probs * self.compiled.rule_matrix[:, n], self.compiled.offsets[:-1])
            contributions = {name: float(v) for name, v in zip(self.compiled.group_names, per_group)}
        if self.method == "hybrid":
            contributions["class name"] = self.hybrid_weight * name_prob
        return ClassEvidence(cls_name, score, contributions)


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


__all__ = ["CoTClassifier", "Explanation", "Scorer", "prompts_used", "resolve_temperature"]
