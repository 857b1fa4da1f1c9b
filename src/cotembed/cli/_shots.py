"""``cotembed curve --shots 1,2,4,8,16 --examples POOL``: accuracy against labelled examples per class.

Parses, checks and delegates to :func:`cotembed._shots.shots_curve`; JSON and PNG like ``curve``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cotembed.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    Resources,
    bounded_int,
    emit,
    guarded_path,
    labelled_samples,
    load_system,
    write_rows,
)
from cotembed.errors import CotembedError, InputError

MAX_SHOTS = 10_000


def shots_list(text: str) -> tuple[int, ...]:
    """``1,2,4,8,16`` -> distinct whole numbers in [1, 10000], in order."""
    parse = bounded_int(1, MAX_SHOTS)
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("give one or more numbers of examples per class, e.g. 1,2,4,8,16")
    return tuple(dict.fromkeys(parse(p) for p in parts))


def add_shots_flags(p: argparse.ArgumentParser) -> None:
    from cotembed._shots import DEFAULT_DRAWS

    g = p.add_argument_group("accuracy against examples per class (instead of against questions)")
    g.add_argument("--shots", type=shots_list, default=None, metavar="K,K,...",
                   help="draw K labelled examples per class from --examples for each K and plot prototype, gda and fused "
                        "against K (and rules induced from each draw), with the zero-shot cot and hybrid lines and each refined on the test batch")
    g.add_argument("--examples", action="append", default=None, metavar="DATA",
                   help="the pool of labelled examples the draws come from (not the test data); repeatable")
    g.add_argument("--draws", type=bounded_int(1, 1000), default=DEFAULT_DRAWS,
                   help=f"seeded draws of the examples per K (default: {DEFAULT_DRAWS})")


def cmd_shots(args: argparse.Namespace) -> int:
    from cotembed._classifier import CoTClassifier
    from cotembed._shots import shots_curve
    from cotembed.reporting._shots import plot_shots, shots_table

    if not args.shots or not args.examples:
        raise InputError("curve --shots K,K,... needs --examples DATA (the pool the examples are drawn from), and the other way round")
    output = Path(args.output)
    if output.suffix.lower() != ".json":
        raise InputError(f"--output {output}: the curve is written as JSON (.json); the PNG goes beside it")
    guarded_path(args, "--output", output, "output")
    system = load_system(args.system)
    samples, skipped = labelled_samples(args, system, args.data, "DATA")
    pool_samples, _ = labelled_samples(args, system, args.examples, "--examples")
    with Resources(args) as res:
        clf = CoTClassifier(system, res.encoder(args.model), temperature=args.temperature, hybrid_weight=args.hybrid_weight,
                            cache=res.cache, batch_size=args.batch_size, progress=not args.quiet, max_pixels=args.max_pixels)
        test, pool = clf.embedding_set(samples, skipped), clf.embedding_set(pool_samples)
        if not len(test) or not len(pool):
            raise CotembedError("curve --shots: no test input or no example could be used")
        curve = shots_curve(clf, test, pool, args.shots, args.draws, args.seed, progress=not args.quiet)
    payload: dict[str, Any] = curve.to_dict()
    payload["system"]["path"] = args.system
    payload["examples"] = {"source": list(args.examples), "count": len(pool)}
    payload["errors"] = [e.to_dict() for e in (*test.errors, *pool.errors)]
    payload["files"] = {"json": str(output)}
    if not args.no_plot:
        payload["files"]["png"] = str(plot_shots(payload, guarded_path(args, "--output", output.with_suffix(".png"), "output")))
    write_rows(args, output, [], payload)
    emit(args, payload, lambda: shots_table(payload) + "\nwrote " + ", ".join(payload["files"].values()))
    return EXIT_FAILURE if payload["errors"] else EXIT_OK


__all__ = ["add_shots_flags", "cmd_shots", "shots_list"]
