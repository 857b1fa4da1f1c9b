"""Flags of probabilities and decisions (classify, eval, explain): parsed here into
:class:`~cotembed.runs._options.DecisionOptions`, applied by the run.

``--probabilities calibrated|normalised``; ``--fit-score``; ``--abstain THRESHOLD`` or
``--abstain-target precision=P|coverage=C --abstain-data DATA``; ``--conformal ALPHA
--conformal-data DATA``; ``--multi-label [--threshold T | --threshold-data DATA]``;
and, for ``eval``, ``--open-set K [--open-set-seed S]`` and ``--plot PNG``.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, Callable

from cotembed.cli._common import add_output, bounded_int, guarded_path, seed_int
from cotembed.errors import InputError
from cotembed.runs._options import FIT_SCORES, DecisionOptions


def finite_number(flag: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{flag}: the threshold must be a finite number, got {text}")
        return value

    return parse


def alpha(text: str) -> float:
    """--conformal ALPHA: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--conformal takes a number in (0, 1), got {text!r}") from None
    if not (math.isfinite(value) and 0 < value < 1):
        raise argparse.ArgumentTypeError(f"--conformal: alpha must be strictly between 0 and 1, got {text}")
    return value


def target(text: str) -> str:
    from cotembed.scoring._decisions import parse_target

    try:
        parse_target(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_probability_flags(p: argparse.ArgumentParser, verb: str) -> None:
    """The flags of ``verb`` (``classify``, ``eval`` or ``explain``)."""
    from cotembed.scoring._conformal import SCORES
    from cotembed.scoring._posteriors import DEFAULT_PROBABILITIES, PROBABILITY_MODES

    g = p.add_argument_group("probabilities and decisions")
    g.add_argument("--probabilities", choices=tuple(PROBABILITY_MODES), default=DEFAULT_PROBABILITIES,
                   help="calibrated: each method's posterior (cot: the product-of-groups likelihood at the system's "
                        "temperature; default); normalised: the scores rescaled to sum to 1 (the first releases' output)")
    if verb == "explain":
        return
    g.add_argument("--fit-score", choices=tuple(FIT_SCORES), default="log-rule-support",
                   help="the absolute fit score every prediction carries: log-rule-support (weighted mean log mass the "
                        "answers put on the top class's options, <= 0; default), rule-support (their share, in [0, 1]) "
                        "or energy (every class's log-rule-support exponentiated, summed and logged, <= log N: "
                        "best at telling unknown inputs on critters)")
    g.add_argument("--abstain", type=finite_number("--abstain"), default=None, metavar="THRESHOLD",
                   help="abstain (prediction null) when the top class's fit score is below THRESHOLD")
    g.add_argument("--abstain-target", type=target, default=None, metavar="precision=P|coverage=C",
                   help="choose the abstention threshold on --abstain-data for this precision of the accepted inputs "
                        "or this share of inputs accepted")
    g.add_argument("--abstain-data", nargs="+", default=None, metavar="DATA", help="labelled data for --abstain-target")
    g.add_argument("--conformal", type=alpha, default=None, metavar="ALPHA",
                   help="a set of classes per input holding the true one with probability >= 1 - ALPHA (split conformal)")
    g.add_argument("--conformal-data", nargs="+", default=None, metavar="DATA",
                   help="labelled calibration data for --conformal (>= 20 inputs, exchangeable with the inputs)")
    g.add_argument("--conformal-score", choices=SCORES, default=None,
                   help="nonconformity score: lac (smallest sets; default), aps or raps (sets adapt to hard inputs)")
    g.add_argument("--multi-label", action="store_true",
                   help="score every class on its own (its rule support, no normalisation across classes) and name "
                        "every class reaching its threshold")
    g.add_argument("--threshold", type=finite_number("--threshold"), default=None, metavar="T",
                   help="--multi-label: one threshold for every class (rule support, in [0, 1])")
    g.add_argument("--threshold-data", nargs="+", default=None, metavar="DATA",
                   help="--multi-label: choose a threshold per class maximising F1 on DATA (labels: classes separated by ';')")
    if verb == "eval":
        g.add_argument("--open-set", type=bounded_int(1, 1_000_000), default=None, metavar="K",
                       help="also hold K classes (seeded) out of the system and report how well the fit score tells "
                            "their inputs from the rest: AUROC, FPR at 95%% TPR, accuracy/coverage curve")
        g.add_argument("--open-set-seed", "--seed", dest="open_set_seed", type=seed_int, default=0, metavar="S",
                       help="seed of the classes --open-set holds out (default: 0)")
        add_output(g, "--plot", default=None, metavar="PNG",
                   help="write the reliability diagrams and the accuracy/coverage curves as PNG (PNG and PNG's name + "
                        ".coverage.png); with --multi-label, per-class AP and F1 bars")


def decision_options(args: argparse.Namespace) -> DecisionOptions:
    """The probabilities and decisions of the flags (explain has only ``--probabilities``)."""
    from cotembed.scoring._posteriors import DEFAULT_PROBABILITIES

    def paths(dest: str) -> tuple[str, ...]:
        return tuple(getattr(args, dest, None) or ())

    return DecisionOptions(
        probabilities=getattr(args, "probabilities", DEFAULT_PROBABILITIES),
        fit_score=getattr(args, "fit_score", "log-rule-support"),
        abstain=getattr(args, "abstain", None), abstain_target=getattr(args, "abstain_target", None),
        abstain_data=paths("abstain_data"), conformal=getattr(args, "conformal", None), conformal_data=paths("conformal_data"),
        conformal_score=getattr(args, "conformal_score", None), multi_label=bool(getattr(args, "multi_label", False)),
        threshold=getattr(args, "threshold", None), threshold_data=paths("threshold_data"),
    )


def write_plots(args: argparse.Namespace, figures: dict[str, Any], title: str) -> list[str]:
    """The reliability diagrams (``--plot PNG``) and the accuracy/coverage curves (next to it)."""
    from pathlib import Path

    from cotembed.reporting._calibration import plot_coverage, plot_reliability

    path = guarded_path(args, "--plot", args.plot, "plot")
    written = [str(plot_reliability(figures["reliability"], path, f"{title}: reliability ({figures['probabilities']})"))]
    if figures["coverage"]:
        second = Path(path).with_suffix(".coverage.png")
        second = guarded_path(args, "--plot", second, "plot")
        written.append(str(plot_coverage(figures["coverage"], second, f"{title}: accuracy/coverage ({figures['fit_score']})")))
    return written


__all__ = ["add_probability_flags", "decision_options", "write_plots"]
