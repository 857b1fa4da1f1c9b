"""``calibrate``: fit a system's temperature (and group weights) so its CoT posterior means what it says
(the work: :func:`cotembed.runs.calibrate`).

The posterior is the product-of-groups likelihood (:mod:`cotembed.scoring._calibration`);
the fit minimises its NLL on labelled data and writes a new system whose
``temperature`` (and, where per-group weights lower the held-out NLL, ``weight``s)
are the fitted ones: reviewable fields that enter the fingerprint. The report gives
accuracy, ECE, NLL and Brier before and after, on the fitting data and on ``--eval``
data (held out: the figures to trust), plus today's sum-normalised CoT for reference.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cotembed.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    ModelDefault,
    add_embeddings_option,
    add_format,
    add_model_options,
    add_output,
    emit,
    model_options,
    seed_int,
)
from cotembed.runs._calibrate import PER_GROUP, CalibrateRequest


def calibrate_request(args: argparse.Namespace) -> CalibrateRequest:
    """The request the flags describe (an untyped ``--model`` with ``--embeddings``: the dataset's model)."""
    return CalibrateRequest(system=args.system, out=args.out, data=tuple(args.data), embeddings=args.embeddings,
                            eval=tuple(args.eval or ()), per_group=args.per_group, seed=args.seed,
                            ignore_unknown=bool(args.ignore_unknown), model=model_options(args),
                            model_given=not isinstance(args.model, ModelDefault), diagrams=bool(args.plot))


def cmd_calibrate(args: argparse.Namespace) -> int:
    from cotembed.reporting._calibration import calibration_table, plot_reliability
    from cotembed.runs._calibrate import calibrate

    result = calibrate(calibrate_request(args))
    for notice in result.notices:
        print(notice, file=sys.stderr)
    payload = result.to_dict()
    if result.diagrams is not None:
        payload["plot"] = str(plot_reliability(dict(result.diagrams), args.plot, result.diagram_title))
    emit(args, payload, lambda: calibration_table(payload))
    return EXIT_OK if result.ok else EXIT_FAILURE


def register(sub: Any) -> None:
    p = sub.add_parser("calibrate", help="fit the system's temperature (and group weights) on labelled data so CoT's "
                                         "probabilities are calibrated; writes a new system")
    p.add_argument("system", help="system file (.yaml or .json)")
    p.add_argument("data", nargs="*", help="labelled ImageFolder directories or CSV/JSONL manifests to fit on (or --embeddings)")
    p.add_argument("--out", required=True, metavar="NEW.yaml", help="where to write the calibrated system (never an input)")
    p.add_argument("--eval", nargs="+", default=None, metavar="PATH", help="held-out labelled data for the before/after report")
    p.add_argument("--per-group", choices=tuple(PER_GROUP), default="auto",
                   help="fit per-group weights: auto (only if they lower the NLL on held-out folds; default), yes, no")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the folds that decide --per-group auto (default: 0)")
    add_output(p, "--plot", default=None, metavar="PNG", help="write the reliability diagram before/after as PNG")
    p.add_argument("--ignore-unknown", action="store_true", help="skip inputs whose label is not a class of the system")
    add_model_options(p, method=False)
    add_embeddings_option(p)
    add_format(p)
    p.set_defaults(func=cmd_calibrate)
