"""The flags for data besides the system: ``--examples DATA`` (labelled few-shot examples) and
``--transductive`` (refine on the unlabelled batch), shared by classify, eval, explain and report.

Parsing and the few checks that need no model live here; the work is
:mod:`cotembed.examples`'s.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from cotembed.errors import InputError
from cotembed.runs.options import ExamplesOptions

EXAMPLES_HELP = ("labelled examples (a folder with a sub-folder per class, a manifest with labels, or an embedding set "
                 "saved with the same model, .npz) that fit the few-shot methods prototype, gda and fused; embedded "
                 "through the cache; repeatable")
TRANSDUCTIVE_HELP = ("refine every method's posterior on the unlabelled batch being classified (EM on class prototypes, "
                     "anchored to the method's own posterior; no label is read); a batch with fewer than 2 inputs per "
                     "class keeps the method's scores, with a note")


def add_examples_flags(p: argparse.ArgumentParser, transductive: bool = True) -> None:
    """``--examples`` (and ``--ignore-unknown`` where the verb has none), and ``--transductive`` for batch verbs."""
    g = p.add_argument_group("few-shot examples and unlabelled batches")
    g.add_argument("--examples", action="append", default=None, metavar="DATA", help=EXAMPLES_HELP)
    if "--ignore-unknown" not in p._option_string_actions:
        g.add_argument("--ignore-unknown", action="store_true",
                       help="skip examples whose label is not a class of the system (else they are an error)")
    if transductive:
        g.add_argument("--transductive", action="store_true", help=TRANSDUCTIVE_HELP)


def examples_options(args: argparse.Namespace) -> ExamplesOptions:
    """The examples and transduction of the flags."""
    return ExamplesOptions(examples=tuple(getattr(args, "examples", None) or ()),
                           ignore_unknown=bool(getattr(args, "ignore_unknown", False)),
                           transductive=bool(getattr(args, "transductive", False)))


def default_methods(args: argparse.Namespace, default: tuple[str, ...]) -> tuple[str, ...]:
    """eval/report without --methods: with --examples, the few-shot methods join the default comparison."""
    from cotembed.examples import example_methods

    if getattr(args, "examples", None) and getattr(args, "methods", None) is None:
        return tuple(dict.fromkeys((*default, *example_methods())))
    return default


def check_examples_flags(args: argparse.Namespace, in_use: Sequence[str]) -> None:
    """A method that needs examples gets them; examples go to a method that uses them (before any work)."""
    from cotembed.examples import example_methods

    users = [m for m in in_use if m in example_methods()]
    if users and not getattr(args, "examples", None):
        raise InputError(f"method {', '.join(users)} needs labelled examples: add --examples DATA (a folder with a "
                         "sub-folder per class, or a manifest with labels)")
    if getattr(args, "examples", None) and not users:
        raise InputError(f"--examples: only for the few-shot methods ({', '.join(example_methods())}); "
                         f"choose one with --method or --methods")


def with_examples(args: argparse.Namespace, clf: Any, methods: Sequence[str], inputs: Sequence[Any] = ()) -> Any:
    """``clf`` with its few-shot methods fitted on ``--examples`` (errors name the flag)."""
    check_examples_flags(args, methods)
    if not getattr(args, "examples", None):
        return clf
    from cotembed.examples import example_methods

    flag = f"--examples {' '.join(args.examples)}"
    try:
        return clf.with_examples(args.examples, [m for m in methods if m in example_methods()],
                                 ignore_unknown=bool(getattr(args, "ignore_unknown", False)), inputs=inputs,
                                 allow_outside=bool(getattr(args, "allow_outside_paths", False)))
    except InputError as exc:
        raise type(exc)(f"{flag}: {exc}") from exc


def provenance(args: argparse.Namespace, clf: Any, settings: Any = None) -> dict[str, Any]:
    """The examples' source and count, transduction on/off and the notes (from the settings in force,
    as a report records them); notes also go to stderr."""
    from cotembed.examples import provenance as of

    info = of(clf, settings or {})
    for note in info.get("notes", ()):
        print(f"cotembed: {note}", file=sys.stderr)
    return info


__all__ = ["add_examples_flags", "check_examples_flags", "default_methods", "provenance", "with_examples"]
