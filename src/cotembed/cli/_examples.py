"""The flags for data besides the system: ``--examples DATA`` (labelled few-shot examples) and
``--transductive`` (refine on the unlabelled batch), shared by classify, eval, explain and report.

Parsing lives here (into :class:`~cotembed.runs._options.ExamplesOptions`); the checks and the
work are the run's (:mod:`cotembed.runs._assembly`, :mod:`cotembed._examples`).
"""

from __future__ import annotations

import argparse

from cotembed.runs._options import ExamplesOptions

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
    from cotembed._examples import example_methods

    if getattr(args, "examples", None) and getattr(args, "methods", None) is None:
        return tuple(dict.fromkeys((*default, *example_methods())))
    return default


__all__ = ["add_examples_flags", "default_methods", "examples_options"]
