"""The method flags shared by the verbs that score: the switches and parameters the registered methods
declare, the classifier they configure, and what a result records about how it was made."""

from __future__ import annotations

import argparse
from typing import Any

from cotembed.cli._common import (
    add_embeddings_option,
    add_model_options,
    bounded_float,
    bounded_int,
    seed_int,
)
from cotembed.cli._decisions import add_probability_flags
from cotembed.cli._examples import add_examples_flags
from cotembed.runs._assembly import learns_from_data
from cotembed.runs._options import MethodSettings


def method_classes() -> list[Any]:
    from cotembed.scoring import method_class, method_names

    return [method_class(name) for name in method_names()]


def switched_methods(args: argparse.Namespace) -> list[str]:
    """Methods named by their shorthand switch (``--adaptive``)."""
    return [cls.name for cls in method_classes() if cls.switch_help and getattr(args, _dest(cls.name), False)]


def _dest(name: str) -> str:
    return name.replace("-", "_")


def chosen_method(args: argparse.Namespace) -> str:
    """classify/explain: a switch (``--adaptive``) is ``--method NAME``; method flags need their method."""
    from cotembed.errors import InputError

    switched = switched_methods(args)
    if len(switched) > 1:
        raise InputError(f"{', '.join('--' + n for n in switched)}: choose one")
    if switched:
        if args.method not in ("cot", switched[0]):
            raise InputError(f"--{switched[0]} and --method {args.method}: choose one (--{switched[0]} is --method {switched[0]})")
        method = switched[0]
    else:
        method = str(args.method)
    check_method_flags(args, (method,))
    return method


def check_method_flags(args: argparse.Namespace, in_use: tuple[str, ...]) -> None:
    """Every method flag given belongs to a method in use; calibration data needs a method that learns."""
    from cotembed.errors import InputError

    used_flags = {p.flag for cls in method_classes() if cls.name in in_use for p in cls.parameters}  # flags methods share
    for cls in method_classes():
        given = [p.flag for p in cls.parameters if p.flag and p.flag not in used_flags and getattr(args, p.name, None) is not None]
        if given and cls.name not in in_use:
            how = f"add --{cls.name}" if cls.switch_help else f"choose method {cls.name}"
            raise InputError(f"{', '.join(given)}: only for {cls.title or 'method ' + cls.name}; {how}")
    if getattr(args, "calibrate", None):
        learners = [cls for cls in method_classes() if learns_from_data(cls)]
        if not any(cls.name in in_use for cls in learners):
            hint = " or ".join(f"--{c.name}" if c.switch_help else f"method {c.name}" for c in learners)
            raise InputError(f"--calibrate: only for methods that learn from data; add {hint}")
    elif getattr(args, "calibrate_without_labels", False):
        raise InputError("--calibrate-without-labels needs --calibrate DATA")


def _flag_type(param: Any) -> Any:
    """The argparse ``type`` of a declared parameter's flag."""
    from importlib import import_module

    from cotembed.cli._common import _number

    if isinstance(param.parse, str):
        module, _, attr = param.parse.partition(":")
        return getattr(import_module(module), attr)
    if param.parse is not None:
        return param.parse
    if param.kind == "float":
        if param.low is None or param.high is None:
            return _number
        return bounded_float(param.low, param.high, low_inclusive=not param.low_open)
    if param.kind == "int":
        return bounded_int(int(param.low if param.low is not None else -(2**63)), int(param.high if param.high is not None else 2**63))
    return str


def _reads_file(param: Any) -> bool:
    return param.kind == "strings" and param.parse is not None


def add_method_flags(p: argparse.ArgumentParser) -> None:
    """Flags derived from the registered methods' declared parameters, a switch per method that
    offers one (``--adaptive``), and the calibration-data flags."""
    groups: dict[str, Any] = {}
    seen: set[str] = set()
    for cls in method_classes():
        flagged = [q for q in cls.parameters if q.flag and q.flag not in seen]
        if not flagged and not cls.switch_help:
            continue
        title = cls.title or f"method {cls.name}"
        g = groups[title] if title in groups else groups.setdefault(title, p.add_argument_group(title))
        if cls.switch_help:
            g.add_argument(f"--{cls.name}", dest=_dest(cls.name), action="store_true", help=cls.switch_help)
        for q in flagged:
            seen.add(q.flag)
            if q.kind == "bool":
                g.add_argument(q.flag, dest=q.name, action="store_const", const=not q.default, default=None, help=q.help)
            else:
                g.add_argument(q.flag, dest=q.name, type=str if _reads_file(q) else _flag_type(q), default=None,
                               metavar=q.metavar, help=q.help)
        if learns_from_data(cls) and "--calibrate" not in seen:
            seen.add("--calibrate")
            g.add_argument("--calibrate", action="append", default=None, metavar="DATA",
                           help="fit what the method learns from data on DATA, a folder or manifest (adaptive: how reliably "
                                "each question answers, so unreliable questions are asked later; labels counted if present, "
                                "else estimated without them); repeatable")
            g.add_argument("--calibrate-without-labels", action="store_true",
                           help="ignore the labels of the --calibrate data (estimate from agreement between questions)")


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """Method parameters given on the command line, by option key (the defaults live with the methods)."""
    options: dict[str, Any] = {}
    for cls in method_classes():
        for q in cls.parameters:
            if q.flag and getattr(args, q.name, None) is not None:
                value = getattr(args, q.name)
                # Files are read here, not by argparse, so their errors name the file and line (exit 2).
                options[cls.option_prefix + q.name] = _flag_type(q)(value) if _reads_file(q) else value
    return options


def method_settings(args: argparse.Namespace) -> MethodSettings:
    """The method parameters and calibration data of the flags (files named by flags read here)."""
    return MethodSettings(options=method_options(args), calibrate=tuple(getattr(args, "calibrate", None) or ()),
                          calibrate_without_labels=bool(getattr(args, "calibrate_without_labels", False)))


def read_templates(path: str) -> tuple[str, ...]:
    """A templates file: one template with a single ``{}`` per line; blank lines and ``#`` comments skipped."""
    from pathlib import Path

    from cotembed.errors import InputError

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--templates {path}: cannot read ({exc})") from exc
    templates, problems = [], []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.count("{}") != 1:
            problems.append(f"line {number}: {text!r} must contain '{{}}' exactly once")
        templates.append(text)
    if problems:
        raise InputError(f"--templates {path}: " + "; ".join(problems))
    if not templates:
        raise InputError(f"--templates {path}: no templates (one per line, each with '{{}}')")
    return tuple(templates)


def seed_list(text: str) -> tuple[int, ...]:
    """``0,1,2`` -> distinct seeds, each a whole number in [0, 2**32)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("give one or more seeds, e.g. 0,1,2,3,4")
    return tuple(dict.fromkeys(seed_int(p) for p in parts))


SCORE_HELP = ("score: the method's score of the predicted class, for ranking the classes of one input, not a "
              "probability. cot: the sum over the questions of the probability that the input has the class's answer "
              "(0 to the number of questions; group weights scale each term); hybrid: that plus --hybrid-weight times the "
              "class name's probability; baseline: the cosine similarity of input and class name; cot-log and adaptive: a "
              "log-probability (0 at best, negative).")
ECE_HELP = ("ECE: expected calibration error of the method's probability for its top class (15 equal-width bins): the "
            "mean gap between how confident the method is and how often it is right, as a fraction from 0 (calibrated) "
            "to 1; acc1/acc5: top-1/top-5 accuracy; mean recall: accuracy averaged over classes.")


def add_evaluation_arguments(p: argparse.ArgumentParser) -> None:
    """What ``eval`` and ``report`` both take: SYSTEM DATA... and the evaluation options (no outputs)."""
    from cotembed.scoring import method_names

    p.add_argument("system", help="system file (.yaml or .json)")
    p.add_argument("data", nargs="*", help="ImageFolder directories or CSV/JSONL/JSON manifests with labels (only read)")
    add_embeddings_option(p)
    add_model_options(p, method=False, several_models=True)
    p.add_argument("--methods", default=None,
                   help=f"comma-separated methods, of {', '.join(method_names())} (default: baseline,cot,hybrid"
                        + "".join(f"; with --{c.name}: {','.join((*c.compare_with, c.name))}" for c in method_classes() if c.switch_help)
                        + ")")
    add_method_flags(p)
    p.add_argument("--ignore-unknown", action="store_true", help="skip inputs whose label is not a class of the system")
    add_probability_flags(p, "eval")
    add_examples_flags(p)
