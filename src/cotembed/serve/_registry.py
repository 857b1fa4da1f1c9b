"""The models the service loaded and the systems it serves, with everything derived
from them that is worth keeping between requests.

One :class:`ServedModel` per ``--model``: the encoder (loaded once, at start), its own
single model thread (every encoder call runs there, so no two ever overlap), its
dynamic batcher, a :class:`~cotembed._embeddings.PromptBank` for the systems' prompts,
and a :class:`~cotembed.scoring.Scorer` per (system, method), built on first use. While
serving, scorers are built on a second, preparer thread that hands the model its prompts a
few at a time, so a system with 20,000 prompts never holds up other requests. Inputs
and prompts go through the same embedding cache as the CLI (images keyed by the sha256
of their bytes), so an image the CLI classified is not encoded again here.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from cotembed._classifier import CoTClassifier, resolve_temperature
from cotembed._embeddings import PromptBank
from cotembed._pipeline import stream_embeddings
from cotembed.cache import EmbeddingStore, open_cache
from cotembed.data import Sample
from cotembed.encoders import load_encoder
from cotembed.encoders._base import Encoder
from cotembed.errors import ApiError, CotembedError, InputError
from cotembed.scoring import DEFAULT_TEMPERATURE, Scorer, ScoringConfig
from cotembed.serve._batching import Arrivals, DynamicBatcher, Item
from cotembed.serve._errors import invalid
from cotembed.serve._metrics import Metrics
from cotembed.serve._settings import ServeSettings
from cotembed.system import System

WARM_METHODS = ("cot", "baseline")
"""Scorers built at start for every (system, model), so first requests pay no prompt encoding."""
PROMPT_TURN_S = 0.1
"""Model time one turn of a system being prepared may take; requests' batches run between turns."""
RETRY_AFTER_S = 2
"""What a request for a system still being prepared is told to wait, in seconds."""
MAX_LABEL_VECTORS = 10_000
"""Ad-hoc label prompts kept in memory per model; past it the table starts afresh (the cache keeps them)."""


def _options_key(options: Mapping[str, Any] | None) -> str:
    """A stable key of a request's method parameters (JSON values), so equal settings share a scorer."""
    import json

    return json.dumps(dict(options or {}), sort_keys=True, default=repr)


class ServedModel:
    """One loaded encoder and what the service keeps for it."""

    def __init__(self, name: str, encoder: Encoder, cache: EmbeddingStore, settings: ServeSettings, metrics: Metrics):
        self.name = name
        self.encoder = encoder
        self.key = encoder.model_key
        self.modalities = frozenset(encoder.modalities)
        self.cache = cache
        self.settings = settings
        self.metrics = metrics
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"cotembed-model-{name}")
        self.preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"cotembed-prepare-{name}")
        """Builds scorers while serving: numpy work here, prompt embedding in turns on the model thread."""
        self._closing = False
        self.bank = PromptBank(encoder, cache)
        self._labels = PromptBank(encoder, cache)
        self.scorers: dict[tuple[str, str, str], Scorer] = {}
        self._building: dict[tuple[str, str, str], asyncio.Future[Scorer]] = {}
        self._classifiers: dict[tuple[str, str, str], CoTClassifier] = {}
        scale = getattr(encoder, "logit_scale", None)
        self.label_temperature = float(scale) if isinstance(scale, (int, float)) and scale > 0 else DEFAULT_TEMPERATURE
        """Softmax temperature of baseline classification over ad-hoc labels (no system)."""
        self.batcher: DynamicBatcher | None = None

    def describe(self) -> dict[str, Any]:
        return {"id": self.name, "object": "model", "model_key": self.key, "modalities": sorted(self.modalities),
                "dim": int(self.encoder.dim)}

    # ------------------------------------------------------------------ encoding
    def start(self, arrivals: Arrivals | None = None) -> None:
        batching = self.settings.batching
        self.batcher = DynamicBatcher(self.run_batch, self.executor, batching, arrivals=None if batching.always_wait else arrivals)
        self.batcher.start()

    def run_batch(self, items: list[Item]) -> list[np.ndarray | str]:
        """Model thread: embeddings of a batch (texts and images each as one pipeline call,
        through the cache); an input that fails gets its error message instead."""
        out: list[np.ndarray | str] = ["not encoded"] * len(items)
        for kind in ("text", "image"):
            rows = [i for i, (k, _) in enumerate(items) if k == kind]
            if not rows:
                continue
            if kind == "text":
                samples = [Sample(source=str(i), kind="text", text=items[i][1]) for i in rows]
            else:
                samples = [Sample.from_bytes(items[i][1], f"input {i}") for i in rows]
            row_of = {sample.source: i for sample, i in zip(samples, rows)}
            encoded = 0
            for batch in stream_embeddings(samples, self.encoder, self.cache, batch_size=len(samples),
                                           max_pixels=self.settings.limits.max_pixels):
                encoded += batch.n_encoded
                for sample, vector in zip(batch.samples, batch.embeddings):
                    out[row_of[sample.source]] = vector
                for error in batch.errors:
                    out[row_of[error.source]] = error.error
            self.metrics.batch(self.name, kind, len(rows), encoded)
        return out

    async def embed(self, items: list[Item]) -> list[np.ndarray | str]:
        assert self.batcher is not None, "the model's batcher starts with the service"
        return await self.batcher.submit(items)

    # ------------------------------------------------------------------- scoring
    def config_for(self, system: System) -> ScoringConfig:
        return ScoringConfig(resolve_temperature(None, system, self.encoder))

    def build_scorer(self, system: System, method: str, options: Mapping[str, Any] | None = None) -> Scorer:
        """Model thread (or start-up): embeds the prompts the method needs through the bank."""
        key = (system.fingerprint, method, _options_key(options))
        scorer = self.scorers.get(key)
        if scorer is None:
            config = ScoringConfig(self.config_for(system).temperature, method_options=dict(options or {}))
            scorer = self.scorers[key] = Scorer.build(system, self.bank.embed, config, (method,))
        return scorer

    def _embed_in_turns(self, texts: Sequence[str]) -> np.ndarray:
        """Preparer thread: prompt vectors, a few at a time on the model thread, so a system of
        20,000 prompts never holds the model for much more than ``PROMPT_TURN_S`` at once. The
        number per turn follows the model's measured speed."""
        if not texts:
            return self.executor.submit(self.bank.embed, texts).result()

        def timed(chunk: Sequence[str]) -> tuple[np.ndarray, float]:
            start = time.perf_counter()
            return self.bank.embed(chunk), time.perf_counter() - start

        parts, start, size = [], 0, 4
        while start < len(texts):
            if self._closing:
                raise CotembedError("the service is shutting down")
            vectors, seconds = self.executor.submit(timed, texts[start:start + size]).result()
            parts.append(vectors)
            start += size
            size = max(1, min(256, int(size * PROMPT_TURN_S / max(seconds, 1e-4))))
        return np.concatenate(parts)

    def _prepare_scorer(self, system: System, method: str, options: Mapping[str, Any] | None = None) -> Scorer:
        key = (system.fingerprint, method, _options_key(options))
        scorer = self.scorers.get(key)
        if scorer is None:
            config = ScoringConfig(self.config_for(system).temperature, method_options=dict(options or {}))
            scorer = Scorer.build(system, self._embed_in_turns, config, (method,))
            self.scorers[key] = scorer
        return scorer

    async def scorer(self, system: System, method: str, options: Mapping[str, Any] | None = None) -> Scorer:
        """The scorer of (system, method, its parameters), built on the preparer thread (requests keep
        being served meanwhile); concurrent first requests share one build."""
        key = (system.fingerprint, method, _options_key(options))
        if key in self.scorers:
            return self.scorers[key]
        pending = self._building.get(key)
        if pending is None:
            pending = asyncio.wrap_future(self.preparer.submit(self._prepare_scorer, system, method, options))
            self._building[key] = pending
            pending.add_done_callback(lambda _: self._building.pop(key, None))
        return await asyncio.shield(pending)

    def _label_vectors(self, texts: list[str]) -> np.ndarray:
        if len(self._labels) > MAX_LABEL_VECTORS:
            self._labels = PromptBank(self.encoder, self.cache)
        return self._labels.embed(texts)

    async def label_vectors(self, texts: list[str]) -> np.ndarray:
        """Unit embeddings of ad-hoc label prompts (model thread, cached)."""
        return await asyncio.wrap_future(self.executor.submit(self._label_vectors, texts))

    # ---------------------------------------------------------------- explaining
    def _classifier(self, system: System, method: str, options: Mapping[str, Any] | None = None) -> CoTClassifier:
        key = (system.fingerprint, method, _options_key(options))
        clf = self._classifiers.get(key)
        if clf is None:
            clf = CoTClassifier(system, self.encoder, method=method, cache=self.cache,
                                max_pixels=self.settings.limits.max_pixels, method_options=dict(options or {}))
            clf.prompt_bank = self.bank  # one prompt table per model
            clf = self._classifiers[key] = clf
        return clf

    def _explain(self, system: System, method: str, kind: str, data: Any, source: str, top_k: int,
                 options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        clf = self._classifier(system, method, options)
        given: dict[str, Any] = {"text": data} if kind == "text" else {"image": Sample.from_bytes(data, source)}
        payload = clf.explain(**given, top_k=top_k).to_dict()  # with the method's own detail, if any
        payload["input"] = source
        return payload

    async def explain(self, system: System, method: str, kind: str, data: Any, source: str, top_k: int,
                      options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await asyncio.wrap_future(self.executor.submit(self._explain, system, method, kind, data, source, top_k, options))

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()

    def close(self) -> None:
        self._closing = True
        self.preparer.shutdown(wait=True, cancel_futures=True)
        self.executor.shutdown(wait=True)
        self.encoder.close()


@dataclass
class SystemEntry:
    """A registered system; ``ready`` once its prompts are embedded on every model."""

    name: str
    system: System
    ready: bool = True
    examples: dict[str, Any] = field(default_factory=dict)
    """Labelled examples by model key (:class:`cotembed.serve._examples.SupportSet`), for the few-shot methods."""
    conformal: dict[str, Any] = field(default_factory=dict)
    """Split-conformal predictors calibrated at start, by model key (:mod:`cotembed.serve._startup`)."""

    def describe(self) -> dict[str, Any]:
        summary = self.system.summary()
        examples = {key: {"examples": int(len(s.labels))} for key, s in self.examples.items()}
        return {"name": self.name, "fingerprint": self.system.fingerprint, "system_name": summary.pop("name"),
                "status": "ready" if self.ready else "preparing",
                "classes": list(self.system.class_names), **{k: v for k, v in summary.items() if k != "hash"},
                **({"examples": examples} if examples else {}),
                **({"conformal": {key: {"alpha": c.alpha, "score": c.score, "threshold": c.threshold,
                                        "n_calibration": c.n_calibration, "method": "cot"}
                                  for key, c in self.conformal.items()}} if self.conformal else {})}


class Registry:
    """Loaded models (the first is the default) and registered systems, by name."""

    def __init__(self, settings: ServeSettings, metrics: Metrics, cache: Any):
        self.settings = settings
        self.metrics = metrics
        self.cache = cache
        self.models: dict[str, ServedModel] = {}
        self.systems: dict[str, SystemEntry] = {}
        self.failed: dict[str, str] = {}
        """Why the last registrations that failed did, by name (the oldest are forgotten)."""
        self._preparing: dict[str, asyncio.Task[SystemEntry]] = {}
        self.arrivals = Arrivals()
        """Requests on their way to a batcher: batches wait for more inputs only while there are some."""
        metrics.gauge("cotembed_queue_inputs", "Inputs admitted and not yet answered, by model.",
                      lambda: {(("model", m.name),): float(m.batcher.pending if m.batcher else 0) for m in self.models.values()})

    @classmethod
    def open(cls, settings: ServeSettings, metrics: Metrics | None = None, log: bool = False) -> "Registry":
        """Open the cache, load every model, register the systems and build their scorers."""
        options: dict[str, Any] = {}
        if settings.encoder_batch_size:
            options["batch_size"] = settings.encoder_batch_size
        if settings.device:
            options["device"] = settings.device

        def load(spec: str, cache: Any) -> Encoder:
            if log:
                print(f"cotembed: loading model {spec}", file=sys.stderr, flush=True)
            return load_encoder(spec, lazy=False, info_store=cache, **options)

        return cls._opened(settings, metrics, load)

    @classmethod
    def with_encoders(cls, settings: ServeSettings, encoders: dict[str, Encoder], metrics: Metrics | None = None) -> "Registry":
        """As :meth:`open`, serving encoders already built (any object of the encoder protocol), by name."""
        return cls._opened(settings, metrics, lambda name, cache: encoders[name], tuple(encoders))

    @classmethod
    def _opened(cls, settings: ServeSettings, metrics: Metrics | None, load: Any, names: tuple[str, ...] | None = None) -> "Registry":
        cache = open_cache(settings.cache, enabled=settings.cache_enabled, recover=settings.cache_recover)
        registry = cls(settings, metrics or Metrics(), cache)
        try:
            for spec in names or tuple(dict.fromkeys(settings.models)):
                registry.models[spec] = ServedModel(spec, load(spec, cache), cache, settings, registry.metrics)
            system_names = settings.system_names or tuple("" for _ in settings.systems)
            for system, name in zip(settings.systems, system_names):
                registry.register(system, name or None)
            if settings.examples or settings.conformal_data:
                from cotembed.serve._startup import calibrate, load_examples

                load_examples(registry, settings.examples)
                if settings.conformal_alpha is not None:
                    calibrate(registry, settings.conformal_data, settings.conformal_alpha, settings.conformal_score)
        except BaseException:
            registry.close()
            raise
        return registry

    def start(self) -> None:
        for model in self.models.values():
            model.start(self.arrivals)

    async def stop(self) -> None:
        """Finish admitted inputs and stop the batchers (graceful shutdown); systems still
        being prepared are given up."""
        for task in list(self._preparing.values()):
            task.cancel()
        await asyncio.gather(*(m.stop() for m in self.models.values()))

    def close(self) -> None:
        for model in self.models.values():
            model.close()
        close = getattr(self.cache, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ lookups
    @property
    def default_model(self) -> ServedModel:
        return next(iter(self.models.values()))

    def model(self, ref: str | None) -> ServedModel:
        if ref is None:
            return self.default_model
        found = self.models.get(ref) or next((m for m in self.models.values() if m.key == ref), None)
        if found is None:
            raise invalid(f"model {ref!r} is not served here; served: {', '.join(self.models)}", "model")
        return found

    def system(self, ref: str, ready: bool = True) -> SystemEntry:
        """A system by its registered name or its fingerprint; with ``ready``, one still being
        prepared is a 503 with ``Retry-After``."""
        entry = self.systems.get(ref) or next((e for e in self.systems.values() if e.system.fingerprint == ref), None)
        if entry is None:
            failed = self.failed.get(ref)
            if failed is not None:
                raise invalid(f"system {ref!r} is not registered: its registration failed: {failed}", "system")
            known = ", ".join(self.systems) or "none (register one with POST /v1/systems)"
            raise invalid(f"system {ref!r} is not registered; registered: {known}", "system")
        if ready and not entry.ready:
            raise ApiError(503, f"system {entry.name!r} is still being prepared (its prompts are being embedded); retry shortly",
                           "system", headers={"Retry-After": str(RETRY_AFTER_S)})
        return entry

    def entries(self) -> Iterator[SystemEntry]:
        return iter(self.systems.values())

    def _admit(self, system: System, name: str | None) -> tuple[str, SystemEntry | None]:
        """The name to use and the entry already there for this system, if any; a name
        taken by a different system is a 409, a full registry a 422."""
        name = (name or system.name or system.fingerprint).strip()
        if not name:
            raise invalid("a system needs a non-empty name", "name")
        existing = self.systems.get(name)
        if existing is not None:
            if existing.system.fingerprint == system.fingerprint:
                return name, existing
            raise ApiError(409, f"a different system is registered as {name!r} (fingerprint {existing.system.fingerprint}); "
                                "register this one under another name", "name")
        if len(self.systems) >= self.settings.limits.max_systems:
            raise invalid(f"the service holds {len(self.systems)} systems, its limit (--max-systems)", "body")
        return name, None

    def register(self, system: System, name: str | None = None) -> tuple[SystemEntry, bool]:
        """At start-up: add a system under ``name`` (default: its own name, else its
        fingerprint) and build its warm scorers. Returns the entry and whether it is new."""
        name, existing = self._admit(system, name)
        if existing is not None:
            return existing, False
        for model in self.models.values():
            for method in WARM_METHODS:
                model.build_scorer(system, method)
        entry = self.systems[name] = SystemEntry(name, system)
        return entry, True

    def add(self, system: System, name: str | None = None) -> tuple[SystemEntry, "asyncio.Task[SystemEntry]", bool]:
        """While serving: admit the system at once (not ready) and prepare its warm scorers in
        the background (:meth:`ServedModel.scorer`: off the event loop and in turns on the
        model thread). Returns the entry, the task that makes it ready, and whether it is new;
        registering the same system under the same name again is not an error."""
        name, existing = self._admit(system, name)
        if existing is not None:
            task = self._preparing.get(name)
            if task is None:
                task = asyncio.get_running_loop().create_task(_ready(existing))
            return existing, task, False
        entry = self.systems[name] = SystemEntry(name, system, ready=False)
        self.failed.pop(name, None)
        task = self._preparing[name] = asyncio.get_running_loop().create_task(self._prepare(entry), name=f"cotembed-prepare-{name}")
        task.add_done_callback(lambda done: (self._preparing.pop(name, None), done.cancelled() or done.exception()))
        return entry, task, True

    async def _prepare(self, entry: SystemEntry) -> SystemEntry:
        try:
            for model in self.models.values():
                for method in WARM_METHODS:
                    await model.scorer(entry.system, method)
        except BaseException as exc:
            if self.systems.get(entry.name) is entry:
                del self.systems[entry.name]
            if isinstance(exc, asyncio.CancelledError):
                raise
            bad_input = isinstance(exc, (InputError, ValueError, UnicodeError))
            message = str(exc) if bad_input else f"the model failed ({type(exc).__name__}); see the server's log"
            self.failed[entry.name] = message
            while len(self.failed) > self.settings.limits.max_systems:
                self.failed.pop(next(iter(self.failed)))
            if bad_input:
                raise invalid(f"system {entry.name!r}: its prompts cannot be encoded: {message}", "body") from exc
            raise ApiError(500, f"system {entry.name!r}: {message}", "body") from exc
        entry.ready = True
        return entry


async def _ready(entry: SystemEntry) -> SystemEntry:
    return entry
