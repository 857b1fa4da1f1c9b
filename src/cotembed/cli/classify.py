"""``classify``: predict the classes of images or texts."""

from __future__ import annotations

import argparse
from typing import Any

from cotembed.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    Resources,
    add_embeddings_option,
    add_format,
    add_model_options,
    add_output,
    bounded_int,
    check_model_inputs,
    check_rows_path,
    data_or_embeddings,
    emit,
    load_system,
    write_rows,
)
from cotembed.cli.decisions import add_probability_flags, apply_decisions, check_flags
from cotembed.cli.examples import add_examples_flags, provenance
from cotembed.cli.methods import SCORE_HELP, add_method_flags, build_classifier, chosen_method, collect_inputs, run_info

CLASSIFY_DESCRIPTION = "Predict the class of each input (image files, folders, manifests, or texts with --text). " + SCORE_HELP


def cmd_classify(args: argparse.Namespace) -> int:
    from cotembed.data import Sample
    from cotembed.reporting.text import predictions_table

    method = chosen_method(args)
    data_or_embeddings(args, "inputs", "INPUTS")
    check_flags(args, "classify")
    system = load_system(args.system)
    if args.engine == "ray":
        from cotembed.cli.embed import classify_on_ray

        return classify_on_ray(args, system, method)
    # a literal text is its own name in the output (not text[0])
    samples = ([] if args.embeddings else [Sample(source=t, kind="text", text=t) for t in args.inputs] if args.text
               else collect_inputs(args, args.inputs))
    if samples:
        check_model_inputs([args.model], samples)
    if args.output:
        check_rows_path("--output", args.output)
    with Resources(args) as res:
        if args.embeddings:
            from cotembed.cli.embed import predictions_from_set, stored_embeddings

            stored, spec = stored_embeddings(args, res, args.model)  # an untyped default --model is the dataset's
            clf = apply_decisions(args, build_classifier(args, res, system, spec, method))
            predictions, errors = predictions_from_set(clf, stored, args.top_k), stored.errors
        else:
            clf = apply_decisions(args, build_classifier(args, res, system, args.model, method, inputs=samples))
            predictions, errors = clf.classify_samples(samples, top_k=args.top_k)
        info = run_info(clf, method, args.system)
        payload = {**info, **provenance(args, clf, info.get("method_options", {})), "predictions": [p.to_dict() for p in predictions],
                   "errors": [e.to_dict() for e in errors]}
    if args.output:
        write_rows(args, args.output, [_prediction_row(p) for p in payload["predictions"]], payload)
    emit(args, payload, lambda: predictions_table(predictions, errors))
    return EXIT_FAILURE if errors or not predictions else EXIT_OK


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
    from cotembed.cli.embed import add_engine_options

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
