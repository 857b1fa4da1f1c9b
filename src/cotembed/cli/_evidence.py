"""Verbs that measure where a system's accuracy comes from: curve."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cotembed.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    Resources,
    add_format,
    add_model_options,
    add_output,
    bounded_int,
    emit,
    guarded_path,
    labelled_samples,
    load_system,
    seed_int,
    write_rows,
)
from cotembed.errors import CotembedError, InputError


def cmd_curve(args: argparse.Namespace) -> int:
    from cotembed._classifier import CoTClassifier
    from cotembed.evaluation._curve import accuracy_curve
    from cotembed.reporting._plots import plot_curve
    from cotembed.reporting._text import curve_table

    if args.shots or args.examples:
        from cotembed.cli._shots import cmd_shots

        return cmd_shots(args)
    output = Path(args.output)
    if output.suffix.lower() != ".json":
        raise InputError(f"--output {output}: the curve is written as JSON (.json); the PNG goes beside it")
    guarded_path(args, "--output", output, "output")
    if not args.no_plot:
        guarded_path(args, "--output", output.with_suffix(".png"), "output")
    system = load_system(args.system)
    samples, skipped = labelled_samples(args, system, args.data, "DATA")
    with Resources(args) as res:
        clf = CoTClassifier(system, res.encoder(args.model), method=args.method, temperature=args.temperature,
                            hybrid_weight=args.hybrid_weight, cache=res.cache, batch_size=args.batch_size, progress=not args.quiet,
                            max_pixels=args.max_pixels)
        data = clf.embedding_set(samples, skipped)
        if len(data) == 0:
            raise CotembedError(f"curve: no input could be used ({len(data.errors)} failed, e.g. {data.errors[0].source})")
        scorer = clf.scorer_for((args.method, "baseline"))
        curve = accuracy_curve(scorer, data, args.method, args.max_subsets, args.seed, progress=not args.quiet)
    payload = curve.to_dict()
    payload["system"]["path"] = args.system
    payload["files"] = {"json": str(output)}
    if not args.no_plot:
        payload["files"]["png"] = str(plot_curve(payload, guarded_path(args, "--output", output.with_suffix(".png"), "output")))
    write_rows(args, output, [], payload)
    emit(args, payload, lambda: curve_table(payload) + "\n" + "wrote " + ", ".join(payload["files"].values()))
    return EXIT_FAILURE if curve.errors else EXIT_OK


def register(sub: Any) -> None:
    from cotembed.evaluation._curve import CURVE_METHODS, DEFAULT_MAX_SUBSETS

    p = sub.add_parser("curve", help="accuracy as questions are added: mean and spread over subsets of k groups, k = 1..G")
    p.add_argument("system")
    p.add_argument("data", nargs="+", help="ImageFolder directories or CSV/JSONL manifests with labels")
    add_model_options(p, method=False)
    p.add_argument("--method", choices=tuple(CURVE_METHODS), default="cot", help="scoring method (default: cot)")
    p.add_argument("--max-subsets", type=bounded_int(1, 100000), default=DEFAULT_MAX_SUBSETS,
                   help=f"subsets of k groups scored per k; more than this are sampled (default: {DEFAULT_MAX_SUBSETS})")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the subset sample (default: 0)")
    p.add_argument("--ignore-unknown", action="store_true", help="skip inputs whose label is not a class of the system")
    add_output(p, "--output", metavar="FILE.json", default="curve.json",
                   help="where to write every point as JSON; the PNG is written beside it (default: curve.json)")
    p.add_argument("--no-plot", action="store_true", help="write the JSON only")
    from cotembed.cli._shots import add_shots_flags

    add_shots_flags(p)
    add_format(p)
    p.set_defaults(func=cmd_curve)
