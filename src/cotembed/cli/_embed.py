"""Verbs that keep embeddings as a Parquet dataset: ``embed`` and ``cache export|import``;
and the shared handling of ``--embeddings DIR`` (see :mod:`cotembed.runs._stored`) and ``classify --engine ray``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cotembed.cli._common import (
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
    model_options,
)
from cotembed.errors import InputError


def cmd_embed(args: argparse.Namespace) -> int:
    from cotembed.runs._embed import EmbedRequest, embed

    result = embed(EmbedRequest(data=tuple(args.data), out=args.out, model=model_options(args), part_rows=args.part_rows,
                                vector_layout=args.vector_layout))
    payload = result.to_dict()
    emit(args, payload, lambda: _embed_table(payload))
    return EXIT_OK if result.ok else EXIT_FAILURE


def _embed_table(p: dict[str, Any]) -> str:
    lines = [f"{p['out']}: {p['written']} embedding(s) written, {p['skipped_existing']} already there, of {p['inputs']} input(s) "
             f"(model {p['model']}, dim {p['dim']})" + (f"; {p['superseded']} older row(s) of the same images replaced" if p["superseded"] else "")]
    lines += [f"  error: {e['input']}: {e['error']}" for e in p["errors"]]
    return "\n".join(lines)


def cmd_cache_export(args: argparse.Namespace) -> int:
    from cotembed._parquet import export_cache

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
    from cotembed._parquet import import_cache

    with Resources(args) as res:
        n, errors = import_cache(res.cache, args.embeddings)
    payload = {"embeddings": args.embeddings, "imported": n, "errors": [e.to_dict() for e in errors]}
    emit(args, payload, lambda: f"{args.embeddings}: {n} embedding(s) imported into the cache"
         + "".join(f"\n  skipped: {e.source}: {e.error}" for e in errors))
    return EXIT_FAILURE if errors else EXIT_OK


# ------------------------------------------------------------------ --embeddings DIR
def embeddings_model(args: argparse.Namespace, res: Resources) -> str:
    """The model spec a verb loads: ``--model``, or with ``--embeddings`` and no typed
    ``--model`` the spec the dataset was written with; a dataset of another model key is
    refused (both keys named)."""
    from cotembed.cli._common import ModelDefault
    from cotembed.runs._stored import stored_model_spec

    if not getattr(args, "embeddings", None):
        return str(args.model)
    typed = args.model and not isinstance(args.model, ModelDefault)
    return stored_model_spec(args.embeddings, res, str(args.model) if typed else None)[0]


def labelled_embeddings(args: argparse.Namespace, res: Resources, system: Any, encoder: Any, samples: list[Any],
                        skipped: list[Any], desc: str, stored_dir: str | None = None) -> Any:
    """Labelled inputs as an :class:`~cotembed._embeddings.EmbeddingSet`: ``samples`` run through
    the model, or the dataset ``stored_dir`` (``--embeddings``: no model call), labels mapped
    to the system's classes. Every verb that learns from labelled data gets them here."""
    from cotembed._embeddings import EmbeddingSet

    if not stored_dir:
        return EmbeddingSet.from_samples(samples, encoder, res.cache, args.batch_size, not args.quiet, skipped, desc=desc,
                                         max_pixels=args.max_pixels)
    from cotembed.runs._stored import labelled_stored_set

    notices: list[str] = []
    data = labelled_stored_set(stored_dir, encoder.model_key, system, getattr(args, "ignore_unknown", False), notices)
    if not getattr(args, "quiet", False):
        for notice in notices:
            print(notice, file=sys.stderr)
    return data


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


def classify_on_ray(args: argparse.Namespace, request: Any) -> int:
    """``classify --engine ray``: predictions into ``--out`` as Parquet (:func:`cotembed.runs._classify.classify_on_ray`)."""
    from cotembed.runs._classify import RayOptions
    from cotembed.runs._classify import classify_on_ray as run_on_ray

    if not args.out:
        raise InputError("--engine ray writes its predictions as Parquet: give --out DIR")
    result = run_on_ray(request, RayOptions(args.out, args.address, args.actors, args.gpus_per_actor))
    run = result.run
    emit(args, result.to_dict(), lambda: f"{run.out}: {run.written} prediction(s) written, {run.skipped_existing} already "
         f"there, {len(run.errors)} error(s) ({run.seconds:.1f} s)" + "".join(f"\n  error: {e['input']}: {e['error']}" for e in run.errors))
    return EXIT_OK if result.ok else EXIT_FAILURE


def register(sub: Any) -> None:
    from cotembed._parquet import DEFAULT_VECTOR_LAYOUT, PART_ROWS, VECTOR_LAYOUTS
    from cotembed.encoders import DEFAULT_MODEL, DEFAULT_MODEL_NOTE

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
