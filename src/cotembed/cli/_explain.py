"""``explain``: each question's answers and the top classes for one input."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cotembed.cli._common import EXIT_OK, add_format, add_model_options, bounded_int, emit, model_options
from cotembed.cli._decisions import add_probability_flags
from cotembed.cli._examples import add_examples_flags, examples_options
from cotembed.cli._methods import add_method_flags, chosen_method, method_settings
from cotembed.runs._explain import ExplainRequest


def explain_request(args: argparse.Namespace) -> ExplainRequest:
    """The request the flags describe (a method switch such as ``--adaptive`` is its method)."""
    request = ExplainRequest(system=args.system, input=args.input, text=bool(args.text), model=model_options(args),
                             method=chosen_method(args), settings=method_settings(args),
                             probabilities=args.probabilities, examples=examples_options(args), top_k=args.top_k)
    request.check()
    return request


def cmd_explain(args: argparse.Namespace) -> int:
    from cotembed.reporting._text import explanation_table
    from cotembed.runs._explain import explain

    result = explain(explain_request(args))
    for notice in result.notices:
        print(notice, file=sys.stderr)
    emit(args, result.to_dict(), lambda: explanation_table(result.explanation))
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
