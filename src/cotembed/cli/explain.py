"""``explain``: each question's answers and the top classes for one input."""

from __future__ import annotations

import argparse
from typing import Any

from cotembed.cli.common import EXIT_OK, Resources, add_format, add_model_options, bounded_int, emit, load_system
from cotembed.cli.decisions import add_probability_flags
from cotembed.cli.examples import add_examples_flags
from cotembed.cli.methods import add_method_flags, build_classifier, chosen_method


def cmd_explain(args: argparse.Namespace) -> int:
    from cotembed.reporting.text import explanation_table

    method = chosen_method(args)
    system = load_system(args.system)
    with Resources(args) as res:
        clf = build_classifier(args, res, system, args.model, method)
        as_text = args.text or set(clf.encoder.modalities) == {"text"}
        explanation = clf.explain(**({"text": args.input} if as_text else {"image": args.input}), top_k=args.top_k)
    emit(args, explanation.to_dict(), lambda: explanation_table(explanation))
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("explain", help="show each question's answers and the top classes for one input")
    p.add_argument("system")
    p.add_argument("input", help="an image path, or a text with --text")
    p.add_argument("--text", action="store_true", help="the input is a literal text, not an image path")
    add_model_options(p)
    add_method_flags(p)
    add_probability_flags(p, "explain")
    add_examples_flags(p, transductive=False)
    p.add_argument("--top-k", type=bounded_int(1, 1000), default=5, help="classes to show (default: 5)")
    add_format(p)
    p.set_defaults(func=cmd_explain)
