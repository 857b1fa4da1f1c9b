"""``classify``: predict the classes of images or texts."""

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
    bounded_int,
    check_rows_path,
    data_or_embeddings,
    emit,
    model_options,
    write_rows,
)
from cotembed.cli._decisions import add_probability_flags, decision_options
from cotembed.cli._examples import add_examples_flags, examples_options
from cotembed.cli._methods import SCORE_HELP, add_method_flags, chosen_method, method_settings
from cotembed.runs._classify import ClassifyRequest

CLASSIFY_DESCRIPTION = "Predict the class of each input (image files, folders, manifests, or texts with --text). " + SCORE_HELP


def classify_request(args: argparse.Namespace) -> ClassifyRequest:
    """The request the flags describe; flag combinations are checked here, before any file is read."""
    method = chosen_method(args)
    data_or_embeddings(args, "inputs", "INPUTS")
    request = ClassifyRequest(
        system=args.system, inputs=tuple(args.inputs), text=bool(args.text), embeddings=args.embeddings,
        model=model_options(args), method=method, settings=method_settings(args), decisions=decision_options(args),
        examples=examples_options(args), top_k=args.top_k,
        model_given=not isinstance(args.model, ModelDefault))  # an untyped default --model is the dataset's
    request.check()
    return request


def cmd_classify(args: argparse.Namespace) -> int:
    from cotembed.reporting._text import predictions_table
    from cotembed.runs._classify import classify

    request = classify_request(args)
    if args.engine == "ray":
        from cotembed.cli._embed import classify_on_ray

        return classify_on_ray(args, request)
    if args.output:
        check_rows_path("--output", args.output)
    result = classify(request)
    for notice in result.notices:
        print(notice, file=sys.stderr)
    payload = result.to_dict()
    if args.output:
        write_rows(args, args.output, [_prediction_row(p) for p in payload["predictions"]], payload)
    emit(args, payload, lambda: predictions_table(list(result.predictions), list(result.errors)))
    return EXIT_OK if result.ok else EXIT_FAILURE


def _prediction_row(p: dict[str, Any]) -> dict[str, Any]:
    row = {k: p[k] for k in ("input", "prediction", "score", "probability", "fit_score", "abstained")}
    row["reason"] = p.get("reason")
    row["label"] = p.get("label")
    row["top"] = "; ".join(f"{t['class']}={t['score']:.4f}" for t in p["top"])
    if "set" in p:
        row["set"] = "; ".join(p["set"])
    if "labels" in p:
        row["labels"] = "; ".join(f"{t['class']}={t['score']:.4f}" for t in p["labels"])
    return row


def register(sub: Any) -> None:
    from cotembed.cli._embed import add_engine_options

    p = sub.add_parser("classify", help="predict classes for images or texts", description=CLASSIFY_DESCRIPTION)
    p.add_argument("system")
    p.add_argument("inputs", nargs="*", help="image files, folders, or CSV/JSONL manifests (path,label or text,label)")
    p.add_argument("--text", action="store_true", help="the inputs are literal texts to classify, not paths")
    add_engine_options(p)
    add_model_options(p)
    add_embeddings_option(p)  # after --model: marks its default as untyped
    add_method_flags(p)
    add_probability_flags(p, "classify")
    add_examples_flags(p)
    p.add_argument("--top-k", type=bounded_int(1, 1000), default=3, help="classes to report per input (default: 3)")
    add_output(p, "--output", metavar="FILE", help="also write the predictions to FILE (.json, .csv or .jsonl)")
    add_format(p)
    p.set_defaults(func=cmd_classify)
