"""``cotembed critters``: generate image splits of the procedural world, train its model."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

from cotembed.cli._common import EXIT_OK, Parser, add_format, add_output, bounded_int, emit, guarded_path, seed_int


def cmd_generate(args: argparse.Namespace) -> int:
    from cotembed_critters.species import generate_split

    out = guarded_path(args, "--out", args.out, "out")
    summary = generate_split(args.species, out, args.per_class, seed=args.seed, difficulty=args.difficulty, size=args.size,
                             progress=not args.quiet)
    emit(
        args,
        summary,
        lambda: (
            f"wrote {summary['n_images']} images ({summary['n_species']} species x {summary['per_class']}) to {summary['out']} "
            f"[{summary['difficulty']}, {summary['size']}px, seed {summary['seed']}] in {summary['seconds']:.1f}s"
        ),
    )
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from cotembed.cache import open_cache
    from cotembed.encoders import load_encoder
    from cotembed_critters.train import TrainConfig, default_train_dir, train

    overrides = {k: getattr(args, k) for k in ("seed", "n_train", "epochs", "batch_size", "threads") if getattr(args, k) is not None}
    config = replace(TrainConfig(), **overrides)
    out = guarded_path(args, "--out", args.out, "out") if args.out else default_train_dir()
    cache = open_cache(args.cache, enabled=not args.no_cache)
    text_encoder = load_encoder("minilm")
    try:
        record = train(config, out_dir=out, log=lambda line: print(line, file=sys.stderr), text_encoder=text_encoder, cache=cache)
    finally:
        text_encoder.close()
        cache.close()
    summary = {k: record[k] for k in ("sha256", "size_bytes", "logit_scale", "train_seconds")} | {"out": str(out)}
    emit(args, summary, lambda: f"trained critters image tower in {summary['train_seconds']:.0f}s: {out} "
                               f"({summary['size_bytes'] / 1e6:.2f} MB, sha256 {summary['sha256'][:12]}); use it with --model critters:{out}")
    return EXIT_OK


def register(sub: Any) -> None:
    critters = sub.add_parser("critters", help="the procedural critters world: generate image splits, train its model")
    critters_sub = critters.add_subparsers(dest="critters_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = critters_sub.add_parser("generate", help="render an ImageFolder split (OUT/<Species>/<i>.png) from a species file")
    p.add_argument("--species", required=True, metavar="SPECIES.yaml", help="species file, e.g. examples/critters/species.yaml")
    p.add_argument("--per-class", type=bounded_int(1, 100_000), required=True, metavar="N", help="images per species (1-100000)")
    p.add_argument("--seed", type=seed_int, required=True, metavar="S", help="split seed; the same seed writes identical files")
    add_output(p, "--out", required=True, metavar="DIR", help="output folder (must not exist or be empty)")
    p.add_argument("--difficulty", choices=("easy", "hard"), default="easy", help="hard: smaller critters, clutter, occlusion, more noise (default: easy)")
    p.add_argument("--size", type=bounded_int(16, 1024), default=64, help="image side in pixels, 16-1024 (default: 64)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_format(p)
    p.set_defaults(func=cmd_generate)
    p = critters_sub.add_parser("train", help="train the critters image tower against the frozen MiniLM text tower (CPU)")
    add_output(p, "--out", default=None, metavar="DIR", help="where to write weights + config (default: a user data folder, never the installed package)")
    p.add_argument("--seed", type=seed_int, default=None, help="training seed (default: 0)")
    p.add_argument("--n-train", type=bounded_int(1, 10_000_000), default=None, metavar="N", help="rendered training images (default: 20000)")
    p.add_argument("--epochs", type=bounded_int(1, 10_000), default=None, help="passes over the training images (default: 12)")
    p.add_argument("--batch-size", type=bounded_int(2, 65_536), default=None, help="contrastive batch size (default: 128)")
    p.add_argument("--threads", type=bounded_int(1, 512), default=None, help="torch CPU threads; fixed for reproducibility (default: 2)")
    p.add_argument("--cache", default=None, metavar="PATH", help="embedding cache for the caption embeddings")
    p.add_argument("--no-cache", action="store_true", help="embed captions without the cache")
    add_format(p)
    p.set_defaults(func=cmd_train)
