"""Flags of probabilities and decisions (classify, eval, explain): parsed here, applied by the classifier.

``--probabilities calibrated|normalised``; ``--fit-score``; ``--abstain THRESHOLD`` or
``--abstain-target precision=P|coverage=C --abstain-data DATA``; ``--conformal ALPHA
--conformal-data DATA``; ``--multi-label [--threshold T | --threshold-data DATA]``;
and, for ``eval``, ``--open-set K [--open-set-seed S]`` and ``--plot PNG``.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, Callable, Sequence

from cotembed.cli.common import add_output, bounded_int, guarded_path, labelled_samples, seed_int
from cotembed.errors import InputError

FIT_SCORE_FLAGS = {"log-rule-support": "log rule support", "rule-support": "rule support", "energy": "energy"}


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
    from cotembed.scoring.decisions import parse_target

    try:
        parse_target(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_probability_flags(p: argparse.ArgumentParser, verb: str) -> None:
    """The flags of ``verb`` (``classify``, ``eval`` or ``explain``)."""
    from cotembed.scoring.conformal import SCORES
    from cotembed.scoring.posteriors import DEFAULT_PROBABILITIES, PROBABILITY_MODES

    g = p.add_argument_group("probabilities and decisions")
    g.add_argument("--probabilities", choices=tuple(PROBABILITY_MODES), default=DEFAULT_PROBABILITIES,
                   help="calibrated: each method's posterior (cot: the product-of-groups likelihood at the system's "
                        "temperature; default); normalised: the scores rescaled to sum to 1 (the first releases' output)")
    if verb == "explain":
        return
    g.add_argument("--fit-score", choices=tuple(FIT_SCORE_FLAGS), default="log-rule-support",
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


def check_flags(args: argparse.Namespace, verb: str) -> None:
    """Flags that need each other, before any input is embedded."""
    pairs = [("--abstain-target", "abstain_target", "--abstain-data", "abstain_data"),
             ("--conformal", "conformal", "--conformal-data", "conformal_data")]
    for flag, dest, other, other_dest in pairs:
        given, needed = getattr(args, dest, None) is not None, getattr(args, other_dest, None) is not None
        if given != needed:
            raise InputError(f"{flag if given else other} needs {other if given else flag}")
    if args.abstain is not None and args.abstain_target is not None:
        raise InputError("--abstain THRESHOLD and --abstain-target: choose one")
    if args.conformal_score is not None and args.conformal is None:
        raise InputError("--conformal-score needs --conformal ALPHA")
    if (args.threshold is not None or args.threshold_data) and not args.multi_label:
        raise InputError(f"{'--threshold' if args.threshold is not None else '--threshold-data'} needs --multi-label")
    if args.threshold is not None and args.threshold_data:
        raise InputError("--threshold and --threshold-data: choose one")
    if verb == "classify" and args.multi_label and args.threshold is None and not args.threshold_data:
        raise InputError("--multi-label needs --threshold T or --threshold-data DATA")


def _data(args: argparse.Namespace, clf: Any, paths: Sequence[str], flag: str) -> list[Any]:
    samples, _ = labelled_samples(args, clf.system, list(paths), flag)
    return samples


def _multilabel_samples(args: argparse.Namespace, paths: Sequence[str], flag: str) -> list[Any]:
    from cotembed.data import collect_samples

    samples = collect_samples(list(paths), allow_outside=args.allow_outside_paths)
    if not samples:
        raise InputError(f"{flag} {', '.join(paths)}: no inputs")
    return samples


def apply_decisions(args: argparse.Namespace, clf: Any) -> Any:
    """The classifier with the decisions the flags ask for, fitted on their data; errors name the flag."""
    steps: list[tuple[str, Callable[[Any], Any]]] = []
    if args.fit_score != "log-rule-support":
        steps.append(("--fit-score", lambda c: c.with_fit_score(FIT_SCORE_FLAGS[args.fit_score])))
    if args.abstain is not None:
        steps.append(("--abstain", lambda c: c.with_abstention(args.abstain)))
    elif args.abstain_target is not None:
        steps.append((f"--abstain-data {' '.join(args.abstain_data)}", lambda c: c.with_abstention(
            target=args.abstain_target, data=_data(args, c, args.abstain_data, "--abstain-data"))))
    if args.conformal is not None:
        steps.append((f"--conformal {args.conformal:g} --conformal-data {' '.join(args.conformal_data)}",
                      lambda c: c.with_conformal(args.conformal, _data(args, c, args.conformal_data, "--conformal-data"),
                                                 args.conformal_score or "lac")))
    if args.multi_label and args.threshold is not None:
        steps.append(("--threshold", lambda c: c.with_multilabel(args.threshold)))
    elif args.multi_label and args.threshold_data:
        steps.append((f"--threshold-data {' '.join(args.threshold_data)}", lambda c: c.with_multilabel(
            data=_multilabel_samples(args, args.threshold_data, "--threshold-data"))))
    for flag, step in steps:
        try:
            clf = step(clf)
        except InputError as exc:
            raise type(exc)(f"{flag}: {exc}") from exc
    return clf


def eval_sections(args: argparse.Namespace, clf: Any, data: Any, methods: Sequence[str]) -> dict[str, Any]:
    """``eval``'s sections besides accuracy: per method, abstention, conformal sets and the open set;
    multi-label; the figures' data when a plot or page is asked for."""
    from cotembed.evaluation import probabilities as ev

    out: dict[str, Any] = {}
    decided = apply_decisions(args, clf)
    per_method: dict[str, dict[str, Any]] = {}
    for method in methods:
        sections: dict[str, Any] = {}
        one = decided.using(method)
        if one.decisions.abstention is not None or one.decisions.conformal is not None:
            scored, labels = ev.scored_data(one, data, method)
            if one.decisions.abstention is not None:
                sections["abstention"] = ev.abstention_section(scored, labels, one)
            if one.decisions.conformal is not None:
                sections["conformal"] = ev.conformal_section(scored, labels, one)
        if args.open_set is not None:
            try:
                sections["open_set"] = ev.open_set_section(one, data, method, args.open_set, args.open_set_seed)
            except InputError as exc:
                raise type(exc)(f"--open-set {args.open_set}: {exc}") from exc
        if sections:
            per_method[method] = sections
    for name in ("abstention", "conformal", "open_set"):
        values = {m: s[name] for m, s in per_method.items() if name in s}
        if values:
            out[name] = values
    if args.plot:
        out["figures"] = ev.probability_figures(decided, data, methods)
    return dict(ev.json_ready(out))


def multilabel_eval(args: argparse.Namespace, clf: Any, paths: Sequence[str]) -> dict[str, Any]:
    """``eval --multi-label``: per-class P/R/F1 and mAP on data whose labels name one or several classes
    (``clf``: with the thresholds of the flags applied)."""
    from cotembed.evaluation import probabilities as ev

    decided = clf
    data = decided.embedding_set(_multilabel_samples(args, paths, "DATA"))
    if not len(data):
        raise InputError(f"{', '.join(paths)}: no input could be used")
    ready: dict[str, Any] = ev.json_ready({"multi_label": ev.multilabel_section(decided, data), "n_inputs": len(data),
                                           "errors": [e.to_dict() for e in data.errors]})
    return ready


def write_plots(args: argparse.Namespace, figures: dict[str, Any], title: str) -> list[str]:
    """The reliability diagrams (``--plot PNG``) and the accuracy/coverage curves (next to it)."""
    from pathlib import Path

    from cotembed.reporting.calibration import plot_coverage, plot_reliability

    path = guarded_path(args, "--plot", args.plot, "plot")
    written = [str(plot_reliability(figures["reliability"], path, f"{title}: reliability ({figures['probabilities']})"))]
    if figures["coverage"]:
        second = Path(path).with_suffix(".coverage.png")
        second = guarded_path(args, "--plot", second, "plot")
        written.append(str(plot_coverage(figures["coverage"], second, f"{title}: accuracy/coverage ({figures['fit_score']})")))
    return written


__all__ = ["add_probability_flags", "apply_decisions", "check_flags", "eval_sections", "multilabel_eval", "write_plots"]


def wants_sections(args: argparse.Namespace) -> bool:
    """Whether ``eval`` reports anything besides accuracy and ECE."""
    return any(getattr(args, k, None) for k in ("abstain", "abstain_target", "conformal", "open_set", "plot"))


