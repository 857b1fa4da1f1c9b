"""The Ray Data engine: the batch callables of :mod:`cotembed.distributed.batch` on a cluster.

:func:`classify_dataset` turns a Ray Dataset of image paths (or of stored embeddings)
into one with prediction, score, abstention and per-question columns, through
``map_batches`` with an actor pool that loads the model once per actor and scores the
embeddings it makes in the same call (stored embeddings are scored by plain tasks). :func:`classify_to_parquet` is the CLI's ``classify --engine ray``:
it collects the inputs, skips those ``--out`` already holds, and writes Parquet.

Ray is the optional extra ``ray`` (``pip install 'cotembed[ray]'``). Connecting:
``address=None`` starts a local cluster (no dashboard, usage stats off); ``"auto"`` or
``"HOST:PORT"`` joins a running one (``ray start --head``, KubeRay), ``"ray://HOST:10001"``
goes through Ray Client.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cotembed.distributed.batch import EMBEDDING, ERROR, EmbedScoreBatch, ScoreBatch
from cotembed.errors import CotembedError, InputError

CONNECT_TIMEOUT_S = 10.0
"""How long to wait for a cluster address to answer before giving up with a clear error."""
WRITE_REMOTE_ARGS = {"num_cpus": 0}
"""Parquet write tasks reserve no CPU: they are light, and on a cluster whose CPUs all hold
model actors (2 actors on 2 cores) they would wait for a free CPU while their input backs up
and stalls the actors."""
DEFAULT_BATCH_SIZE = 256
"""Images per actor call: large enough for the model, small enough to keep actors busy."""


def require_ray() -> Any:
    """The ``ray`` module, or an error naming the extra that installs it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise CotembedError("--engine ray needs Ray Data: pip install 'cotembed[ray]'") from exc
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """``HOST:PORT`` of an address to probe; None for ``auto`` / ``local`` (nothing to probe)."""
    if address in ("auto", "local"):
        return None
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise InputError(f"--address {address}: expected HOST:PORT, ray://HOST:PORT or auto")
    return host.strip("[]"), int(port)


def connect(address: str | None = None, timeout_s: float = CONNECT_TIMEOUT_S, num_cpus: int | None = None) -> Any:
    """Start a local Ray cluster (``address=None``) or join one; an unreachable address fails within ``timeout_s``."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        target = _host_port(address)
        if target is not None:
            try:
                with socket.create_connection(target, timeout=timeout_s):
                    pass
            except OSError as exc:
                raise CotembedError(f"--address {address}: no Ray cluster answers there within {timeout_s:g} s "
                                    f"({exc.strerror or exc}); start one with `ray start --head` or check the address") from exc
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    else:
        ray.init(include_dashboard=False, num_cpus=num_cpus, log_to_driver=False, logging_level="ERROR")
    return ray


def prompt_vectors(system: Any, model: Any, config: Any, methods: Sequence[str], cache: Any = None) -> dict[str, np.ndarray]:
    """The system's prompt embeddings, computed once on the driver (from the cache when it has them).

    ``model``: a spec (loaded lazily, closed after) or an encoder the caller owns.
    """
    from cotembed._embeddings import PromptBank
    from cotembed.encoders import load_encoder
    from cotembed.scoring import Scorer

    encoder = load_encoder(model, lazy=True, info_store=cache) if isinstance(model, str) else model
    try:
        return dict(Scorer.build(system, PromptBank(encoder, cache).embed, config, methods).prompt_vectors)
    finally:
        if isinstance(model, str):
            encoder.close()


def classify_dataset(ds: Any, system: Any, model: str | None, *, vectors: Mapping[str, np.ndarray], temperature: float,
                     method: str = "cot", hybrid_weight: float = 1.0, actors: int = 1, gpus_per_actor: float = 0.0,
                     batch_size: int = DEFAULT_BATCH_SIZE, model_batch_size: int | None = None,
                     abstain_below: float | None = None, max_pixels: int | None = None,
                     batch_class: type = EmbedScoreBatch) -> Any:
    """A Ray Dataset with ``prediction``, ``score``, ``abstained``, ``answer:<group>``, ``p:<group>`` and ``error``.

    ``ds`` has a ``path`` column (and optionally ``bytes`` and ``label``), which is embedded
    by ``actors`` actors holding ``model`` (``gpus_per_actor`` GPUs each), or already an
    ``embedding`` column (then no model is used). ``vectors``: the system's prompt
    embeddings (see :func:`prompt_vectors`). ``batch_class``: what each actor builds, from
    :class:`~cotembed.distributed.batch.EmbedScoreBatch`'s keyword arguments (a subclass
    that wraps the model, adds columns or instruments the work). An actor that dies
    (killed, out of memory, its node lost) is restarted and its batch retried: Ray Data's
    defaults for actor pools (``max_restarts=-1``, ``max_task_retries=-1``), which Ray 2.60
    no longer lets ``map_batches`` set by name.
    """
    require_ray()
    from ray.data import ActorPoolStrategy

    if EMBEDDING in ds.schema().names:
        scorer = ScoreBatch(system, vectors, temperature, method, hybrid_weight, abstain_below)
        return ds.map_batches(scorer, batch_size=max(batch_size, 4096), batch_format="numpy")
    if model is None:
        raise InputError("classify_dataset: the dataset has no embedding column, so a model is needed")
    return ds.map_batches(  # one stage: each actor embeds and scores its batch (see EmbedScoreBatch)
        batch_class,
        fn_constructor_kwargs={"model": model, "system": system, "prompt_vectors": dict(vectors), "temperature": temperature,
                               "method": method, "hybrid_weight": hybrid_weight, "abstain_below": abstain_below,
                               "batch_size": model_batch_size, "max_pixels": max_pixels},
        compute=ActorPoolStrategy(size=actors),
        batch_size=batch_size,
        batch_format="numpy",
        num_gpus=gpus_per_actor or None,
    )


# ----------------------------------------------------------------------- the CLI's run
@dataclass
class RayRun:
    """What ``classify --engine ray`` did."""

    out: str
    model: str
    total: int
    skipped_existing: int
    written: int
    errors: list[dict[str, str]]
    seconds: float
    cluster_start_seconds: float = 0.0
    """Of ``seconds``, the time to start (or join) the Ray cluster: paid once per process, not per image."""
    superseded: int = 0
    """Error rows of an earlier run replaced by this run's rows for the same inputs."""

    def to_dict(self) -> dict[str, Any]:
        return {"engine": "ray", "out": self.out, "model": self.model, "inputs": self.total, "skipped_existing": self.skipped_existing,
                "written": self.written, "superseded": self.superseded, "errors": self.errors, "seconds": round(self.seconds, 3),
                "cluster_start_seconds": round(self.cluster_start_seconds, 3)}


def done_paths(out: str | Path) -> set[str]:
    """Inputs ``out`` already holds predictions for (its ``path`` column), so a rerun skips them."""
    from cotembed._parquet import part_files, require_pyarrow

    require_pyarrow()
    import pyarrow.parquet as pq

    found: set[str] = set()
    for path in part_files(out):
        try:
            table = pq.read_table(path, columns=["path", ERROR])
        except Exception:  # a file cut short by an interrupted run: its inputs are redone
            continue
        found.update(p for p, e in zip(table.column("path").to_pylist(), table.column(ERROR).to_pylist()) if not e)
    return found


def classify_to_parquet(system: Any, system_path: str, inputs: Sequence[str], model: str, out: str, *, config: Any, method: str = "cot",
                        address: str | None = None, actors: int = 1, gpus_per_actor: float = 0.0, batch_size: int = DEFAULT_BATCH_SIZE,
                        model_batch_size: int | None = None, cache: Any = None, allow_outside: bool = False,
                        max_pixels: int | None = None, progress: bool = True, encoder: Any = None,
                        batch_class: type = EmbedScoreBatch) -> RayRun:
    """Classify the images under ``inputs`` on Ray and append Parquet files to ``out``; resumes from what ``out`` holds.

    Inputs ``out`` holds a prediction for are skipped; inputs it holds only an error for are
    redone, and once the new rows are written the old error rows are removed (so each input
    has one row). ``encoder``: the driver's (lazy) encoder of ``model`` for the prompts, if
    the caller has one open. ``batch_class``: see :func:`classify_dataset`.
    """
    from cotembed._parquet import drop_rows, part_files
    from cotembed.data import collect_samples

    ray = require_ray()
    started = time.perf_counter()
    samples = collect_samples(inputs, allow_outside=allow_outside)
    texts = [s.source for s in samples if s.kind != "image"]
    if texts:
        raise InputError(f"--engine ray classifies images; {len(texts)} text input(s) given (e.g. {texts[0]})")
    done = done_paths(out) if Path(out).exists() else set()
    todo = [s for s in samples if str(s.path) not in done]
    vectors = prompt_vectors(system, encoder if encoder is not None else model, config, (method, "cot"), cache)
    run = RayRun(out, model, len(samples), len(samples) - len(todo), 0, [], 0.0)
    if todo:
        cluster_started = time.perf_counter()
        connect(address, num_cpus=None)
        run.cluster_start_seconds = time.perf_counter() - cluster_started
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress
        items = [{"path": str(s.path), "label": s.label} for s in todo]
        blocks = max(2 * actors, min(len(items) // max(batch_size, 1), 64), 1)
        ds = ray.data.from_items(items, override_num_blocks=blocks)
        result = classify_dataset(ds, system, str(model), vectors=vectors, temperature=config.temperature, method=method,
                                  hybrid_weight=config.hybrid_weight, actors=actors, gpus_per_actor=gpus_per_actor,
                                  batch_size=batch_size, model_batch_size=model_batch_size, max_pixels=max_pixels,
                                  batch_class=batch_class)
        try:
            Path(out).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"--out {out}: cannot create ({exc.strerror or exc})") from exc
        earlier = part_files(out)
        result.write_parquet(str(out), ray_remote_args=dict(WRITE_REMOTE_ARGS), schema=prediction_schema(system))
        run.written = len(todo)
        retried = {str(s.path) for s in todo}
        run.superseded = drop_rows(out, "path", retried, files=earlier)  # the earlier runs' error rows of inputs redone now
        run.errors = _errors_in(out, {str(s.path) for s in todo})
    run.seconds = time.perf_counter() - started
    if progress:
        print(f"classify --engine ray: {run.written} written, {run.skipped_existing} already in {out}, {len(run.errors)} error(s)",
              file=sys.stderr)
    return run


def prediction_schema(system: Any) -> Any:
    """The Arrow schema of ``classify --engine ray``'s output, fixed so that every part file
    has the same column types: a block whose labels (or predictions) are all missing would
    otherwise get a null or float column, and the folder would no longer read as one table."""
    import pyarrow as pa

    groups = system.compile().group_names
    return pa.schema([("path", pa.string()), ("label", pa.string()), ("content_hash", pa.string()), (ERROR, pa.string()),
                      ("prediction", pa.string()), ("score", pa.float32()), ("abstained", pa.bool_())]
                     + [(f"answer:{g}", pa.string()) for g in groups] + [(f"p:{g}", pa.float32()) for g in groups])


def _errors_in(out: str | Path, paths: set[str]) -> list[dict[str, str]]:
    import pyarrow.parquet as pq

    from cotembed._parquet import part_files

    errors: dict[str, str] = {}
    for path in part_files(out):
        table = pq.read_table(path, columns=["path", ERROR])
        for p, e in zip(table.column("path").to_pylist(), table.column(ERROR).to_pylist()):
            if e and p in paths:
                errors[p] = e
    return [{"input": p, "error": e} for p, e in sorted(errors.items())]


__all__ = ["CONNECT_TIMEOUT_S", "RayRun", "classify_dataset", "classify_to_parquet", "connect", "done_paths", "prediction_schema", "prompt_vectors",
           "require_ray"]
