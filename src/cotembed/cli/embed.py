"""Verbs that keep embeddings as a Parquet dataset: ``embed`` and ``cache export|import``;
and the shared handling of ``--embeddings DIR`` and ``classify --engine ray``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cotembed.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    Resources,
    add_cache_options,
    add_format,
    add_max_pixels,
    add_output,
    add_quiet,
    bounded_int,
    emit,
)
from cotembed.errors import InputError

WRITE_ROWS = 8192


def cmd_embed(args: argparse.Namespace) -> int:
    from cotembed.cache import text_key
    from cotembed.data import collect_samples
    from cotembed.distributed.batch import content_hash
    from cotembed.parquet import EmbeddingWriter, check_model, drop_rows, existing_hashes, read_info, require_pyarrow
    from cotembed.pipeline import stream_embeddings

    require_pyarrow()
    samples = collect_samples(args.data, allow_outside=args.allow_outside_paths)
    with Resources(args) as res:
        encoder = res.encoder(args.model)
        info = read_info(args.out)
        done: set[str] = set()
        if info is not None:
            check_model(info, args.out, encoder.model_key)
            done = existing_hashes(args.out)
        hashes = {s.source: (text_key(s.text or "") if s.kind == "text" else content_hash(s.path)) for s in samples}
        todo = [s for s in samples if hashes[s.source] is None or hashes[s.source] not in done]
        errors: list[dict[str, str]] = []
        writer: EmbeddingWriter | None = None
        try:
            for batch in stream_embeddings(todo, encoder, res.cache, args.batch_size, not args.quiet, "embedding",
                                           max_pixels=args.max_pixels):
                errors.extend(e.to_dict() for e in batch.errors)
                if not batch.samples:
                    continue
                if writer is None:
                    writer = EmbeddingWriter(args.out, encoder.model_key, batch.embeddings.shape[1], model_spec=args.model,
                                             part_rows=args.part_rows, vector_layout=args.vector_layout)
                writer.add([s.source for s in batch.samples], [s.label for s in batch.samples], [s.kind for s in batch.samples],
                           [hashes[s.source] or "" for s in batch.samples], batch.embeddings)
        finally:
            if writer is not None:
                writer.close()
        images_written = {hashes[s.source] for s in todo if s.kind != "text"} & (writer.done if writer else set())
        superseded = drop_rows(args.out, "content_hash", _superseded(done, images_written))  # after the new rows: never a loss
        payload = {"out": args.out, "model": encoder.model_key, "inputs": len(samples), "skipped_existing": len(samples) - len(todo),
                   "written": writer.n_written if writer else 0, "superseded": superseded, "dim": writer.info.dim if writer else (info.dim if info else None),
                   "errors": errors}
    emit(args, payload, lambda: _embed_table(payload))
    return EXIT_FAILURE if errors else EXIT_OK


def _superseded(existing: set[str], written: set[Any]) -> set[str]:
    """Keys of rows that the rows just written replace: the same image content under another
    decoding version or mode (``<sha256>`` or ``<sha256>:d1`` against ``<sha256>:d2``)."""
    digests = {key.split(":", 1)[0] for key in written if key}
    return {key for key in existing if key not in written and key.split(":", 1)[0] in digests}


def _embed_table(p: dict[str, Any]) -> str:
    lines = [f"{p['out']}: {p['written']} embedding(s) written, {p['skipped_existing']} already there, of {p['inputs']} input(s) "
             f"(model {p['model']}, dim {p['dim']})" + (f"; {p['superseded']} older row(s) of the same images replaced" if p["superseded"] else "")]
    lines += [f"  error: {e['input']}: {e['error']}" for e in p["errors"]]
    return "\n".join(lines)


def cmd_cache_export(args: argparse.Namespace) -> int:
    from cotembed.parquet import export_cache

    with Resources(args) as res:
        model_key = res.encoder(args.model).model_key
        cache = res.cache
        if not hasattr(cache, "iter_vectors"):
            raise InputError("cache export: --no-cache leaves nothing to export")
        written = export_cache(cache, args.out, model_key, args.kind)
    payload = {"out": args.out, "model": model_key, "written": written}
    emit(args, payload, lambda: f"{args.out}: {written} embedding(s) of {model_key} exported")
    return EXIT_OK


def cmd_cache_import(args: argparse.Namespace) -> int:
    from cotembed.parquet import import_cache

    with Resources(args) as res:
        n, errors = import_cache(res.cache, args.embeddings)
    payload = {"embeddings": args.embeddings, "imported": n, "errors": [e.to_dict() for e in errors]}
    emit(args, payload, lambda: f"{args.embeddings}: {n} embedding(s) imported into the cache"
         + "".join(f"\n  skipped: {e.source}: {e.error}" for e in errors))
    return EXIT_FAILURE if errors else EXIT_OK


# ------------------------------------------------------------------ --embeddings DIR
def stored_embeddings(args: argparse.Namespace, res: Resources, spec: str | None) -> tuple[Any, str]:
    """The ``--embeddings`` dataset and the model spec whose prompts score it.

    No ``--model`` (or its default, not typed): the spec the dataset was written with. A
    typed ``--model`` of another model key is refused, even the default's name. The model
    itself loads only if a prompt is not cached.
    """
    from cotembed.cli.common import ModelDefault
    from cotembed.parquet import check_model, read_embedding_set, read_info_or_fail

    info = read_info_or_fail(args.embeddings)
    spec = None if isinstance(spec, ModelDefault) else spec
    spec = spec or info.model_spec or info.model_key
    check_model(info, args.embeddings, res.encoder(spec).model_key)
    data = read_embedding_set(args.embeddings, info.model_key)
    for error in data.errors:
        if not getattr(args, "quiet", False):
            print(f"--embeddings: skipped {error.source}: {error.error}", file=sys.stderr)
    return data, spec


def embeddings_model(args: argparse.Namespace, res: Resources) -> str:
    """The model spec a verb loads: ``--model``, or with ``--embeddings`` and no typed
    ``--model`` the spec the dataset was written with; a dataset of another model key is
    refused (both keys named)."""
    from cotembed.cli.common import ModelDefault
    from cotembed.parquet import check_model, read_info_or_fail

    if not getattr(args, "embeddings", None):
        return str(args.model)
    info = read_info_or_fail(args.embeddings)
    typed = args.model and not isinstance(args.model, ModelDefault)
    spec = args.model if typed else (info.model_spec or info.model_key)
    check_model(info, args.embeddings, res.encoder(spec).model_key)
    return str(spec)


def labelled_embeddings(args: argparse.Namespace, res: Resources, system: Any, encoder: Any, samples: list[Any],
                        skipped: list[Any], desc: str, stored_dir: str | None = None) -> Any:
    """Labelled inputs as an :class:`~cotembed.embeddings.EmbeddingSet`: ``samples`` run through
    the model, or the dataset ``stored_dir`` (``--embeddings``: no model call), labels mapped
    to the system's classes. Every verb that learns from labelled data gets them here."""
    from cotembed.embeddings import EmbeddingSet

    if not stored_dir:
        return EmbeddingSet.from_samples(samples, encoder, res.cache, args.batch_size, not args.quiet, skipped, desc=desc,
                                         max_pixels=args.max_pixels)
    from cotembed.parquet import read_embedding_set

    stored = read_embedding_set(stored_dir, encoder.model_key)
    for error in stored.errors:
        if not getattr(args, "quiet", False):
            print(f"--embeddings: skipped {error.source}: {error.error}", file=sys.stderr)
    unlabelled = [s for s, label in zip(stored.sources, stored.labels) if label is None]
    if unlabelled:
        raise InputError(f"--embeddings {stored_dir}: {len(unlabelled)} row(s) have no label (e.g. {unlabelled[0]}); "
                         "this verb learns from labelled data: embed an ImageFolder or a manifest with a label column")
    data = resolve_stored_labels(stored, system, getattr(args, "ignore_unknown", False))
    if not len(data):
        raise InputError(f"--embeddings {stored_dir}: no labelled row of this system's classes")
    return data


def resolve_stored_labels(data: Any, system: Any, ignore_unknown: bool) -> Any:
    """Labels mapped to the system's classes (aliases, case); unknown ones refused or, if asked, skipped."""
    from cotembed.data import nfc
    from cotembed.errors import UnknownLabelError

    keep: list[int] = []
    unknown: dict[str, str] = {}
    labels: list[str | None] = []
    for row, label in enumerate(data.labels):
        name = system.resolve_label(nfc(label)) if label is not None else None
        if label is not None and name is None:
            unknown.setdefault(label, data.sources[row])
            continue
        keep.append(row)
        labels.append(name)
    if unknown and not ignore_unknown:
        shown = ", ".join(f"{lbl!r} (first at {src})" for lbl, src in list(unknown.items())[:10])
        raise UnknownLabelError(f"{len(unknown)} label(s) are not classes of the system: {shown}; add --ignore-unknown to skip them")
    subset = data.subset(keep)
    subset.labels = labels
    subset.errors = data.errors
    subset.skipped = [data.sources[i] for i in range(len(data)) if i not in set(keep)]
    return subset


def predictions_from_set(clf: Any, data: Any, top_k: int) -> list[Any]:
    """Predictions of the classifier's method for every row of an embedding set (no model call)."""
    import numpy as np

    from cotembed.classifier import Prediction

    scores = clf.scorer.scores(data.embeddings, clf.method) if len(data) else np.zeros((0, len(clf.classes_)), dtype=np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")[:, : max(1, top_k)]
    out = []
    for source, label, row, idx in zip(data.sources, data.labels, scores, order):
        top = [(str(clf.classes_[i]), float(row[i])) for i in idx]
        out.append(Prediction(source, top[0][0], top[0][1], top, label))
    return out


# ---------------------------------------------------------------- classify --engine ray
def add_engine_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("distributed classification (Ray Data)")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process; ray: a Ray cluster (needs cotembed[ray] and --out)")
    g.add_argument("--address", default=None, metavar="ADDR",
                   help="Ray cluster to join: HOST:PORT, ray://HOST:10001 or auto (default: start a local one)")
    g.add_argument("--actors", type=bounded_int(1, 100_000), default=1, metavar="N", help="model actors (each loads the model once; default: 1)")
    g.add_argument("--gpus-per-actor", type=float, default=0.0, metavar="G", help="GPUs reserved per actor (default: 0)")
    add_output(g, "--out", default=None, metavar="DIR", help="--engine ray: write predictions as Parquet into DIR (reruns skip what it holds)")


def classify_on_ray(args: argparse.Namespace, system: Any, method: str) -> int:
    """``classify --engine ray``: predictions into ``--out`` as Parquet."""
    import math

    from cotembed.classifier import resolve_temperature
    from cotembed.distributed.ray import classify_to_parquet
    from cotembed.scoring import ScoringConfig

    if not args.out:
        raise InputError("--engine ray writes its predictions as Parquet: give --out DIR")
    if args.text or getattr(args, "embeddings", None):
        raise InputError("--engine ray classifies image files: drop --text / --embeddings")
    if not (math.isfinite(args.gpus_per_actor) and args.gpus_per_actor >= 0):
        raise InputError(f"--gpus-per-actor must be a finite number >= 0, got {args.gpus_per_actor}")
    with Resources(args) as res:
        encoder = res.encoder(args.model)
        config = ScoringConfig(resolve_temperature(args.temperature, system, encoder), float(args.hybrid_weight))
        run = classify_to_parquet(system, args.system, args.inputs, args.model, args.out, config=config, method=method,
                                  address=args.address, actors=args.actors, gpus_per_actor=args.gpus_per_actor,
                                  model_batch_size=args.batch_size, cache=res.cache, allow_outside=args.allow_outside_paths,
                                  max_pixels=args.max_pixels, progress=not args.quiet, encoder=encoder)
    payload = {**run.to_dict(), "system": {"name": system.name, "path": args.system, "hash": system.fingerprint},
               "method": method, "temperature": config.temperature}
    emit(args, payload, lambda: f"{run.out}: {run.written} prediction(s) written, {run.skipped_existing} already there, "
         f"{len(run.errors)} error(s) ({run.seconds:.1f} s)" + "".join(f"\n  error: {e['input']}: {e['error']}" for e in run.errors))
    return EXIT_FAILURE if run.errors else EXIT_OK


def register(sub: Any) -> None:
    from cotembed.encoders import DEFAULT_MODEL, DEFAULT_MODEL_NOTE
    from cotembed.parquet import DEFAULT_VECTOR_LAYOUT, PART_ROWS, VECTOR_LAYOUTS

    p = sub.add_parser("embed", help="embed images or texts into a Parquet dataset (resumable; shareable without the model)")
    p.add_argument("data", nargs="+", help="image files, folders, or CSV/JSONL manifests (path,label or text,label)")
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="SPEC", help=f"model spec (default: {DEFAULT_MODEL}, {DEFAULT_MODEL_NOTE})")
    add_output(p, "--out", required=True, metavar="DIR", help="dataset folder: Parquet part files plus _cotembed.json")
    p.add_argument("--batch-size", type=bounded_int(1, 4096), default=None, help="inputs per model call (default: the encoder's)")
    p.add_argument("--device", default=None, help="torch device for the model")
    p.add_argument("--part-rows", type=bounded_int(1, 10_000_000), default=PART_ROWS, metavar="N",
                   help=f"rows per Parquet part file; an interrupted run keeps every finished part (default: {PART_ROWS})")
    p.add_argument("--vector-layout", choices=VECTOR_LAYOUTS, default=DEFAULT_VECTOR_LAYOUT,
                   help="embedding column of a new dataset: binary (raw little-endian float32 bytes, about twice as fast to "
                        "re-score) or list (float32 fixed-size list, read as numbers by any data tool); an existing dataset "
                        f"keeps its own (default: {DEFAULT_VECTOR_LAYOUT})")
    p.add_argument("--allow-outside-paths", action="store_true", help="let manifests name files outside their own folder")
    add_max_pixels(p)
    add_cache_options(p)
    add_quiet(p)
    add_format(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("cache", help="move the SQLite embedding cache to and from a Parquet dataset")
    verbs = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION", parser_class=type(p))
    q = verbs.add_parser("export", help="write a model's cached embeddings into a Parquet dataset")
    q.add_argument("--model", default=DEFAULT_MODEL, metavar="SPEC", help=f"whose embeddings (default: {DEFAULT_MODEL}, {DEFAULT_MODEL_NOTE})")
    add_output(q, "--out", required=True, metavar="DIR", help="dataset folder (rows already there are skipped)")
    q.add_argument("--kind", choices=("image", "text"), default=None, help="only image or only text embeddings (default: both)")
    add_cache_options(q)
    add_quiet(q)
    add_format(q)
    q.set_defaults(func=cmd_cache_export)
    q = verbs.add_parser("import", help="read a Parquet dataset's embeddings into the cache")
    q.add_argument("embeddings", metavar="DIR", help="dataset folder written by `cotembed embed` or `cache export`")
    add_cache_options(q)
    add_quiet(q)
    add_format(q)
    q.set_defaults(func=cmd_cache_import)
