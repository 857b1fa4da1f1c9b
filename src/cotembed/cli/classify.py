"""Verbs that use a system as it is: validate, classify, eval, explain, models."""

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
    bounded_float,
    bounded_int,
    data_or_embeddings,
    emit,
    load_system,
    seed_int,
    write_rows,
)


def cmd_validate(args: argparse.Namespace) -> int:
    from cotembed.reporting.text import validate_table

    summary = {"path": args.system, **load_system(args.system).summary()}
    emit(args, {"valid": True, **summary}, lambda: validate_table(summary))
    return EXIT_OK


def _collect(args: argparse.Namespace, inputs: list[str]) -> Any:
    from cotembed.data import collect_samples

    return collect_samples(inputs, allow_outside=args.allow_outside_paths)


def _classifier(args: argparse.Namespace, res: Resources, system: Any, spec: str, method: str,
                methods: tuple[str, ...] = ()) -> Any:
    from cotembed.classifier import CoTClassifier

    encoder = res.encoder(spec)

    def build(name: str, options: dict[str, Any]) -> Any:
        return CoTClassifier(system, encoder, method=name, temperature=args.temperature, hybrid_weight=args.hybrid_weight,
                             cache=res.cache, batch_size=args.batch_size, progress=not args.quiet, method_options=options,
                             max_pixels=args.max_pixels)

    options = method_options(args)
    if "adaptive" in (method, *methods):
        options.update(adaptive_options(args, system, lambda: build("cot", {})))
    return build(method, options)


ADAPTIVE_EVAL_METHODS = ("cot", "cot-log", "adaptive")
"""eval --adaptive without --methods: the full system both ways, and adaptive questioning."""
ADAPTIVE_FLAGS = ("confidence", "max_questions", "calibrate", "calibrate_without_labels")


def adaptive_method(args: argparse.Namespace) -> str:
    """classify/explain: ``--adaptive`` is ``--method adaptive``; its flags need it."""
    if getattr(args, "adaptive", False):
        if args.method not in ("cot", "adaptive"):
            from cotembed.errors import InputError

            raise InputError(f"--adaptive and --method {args.method}: choose one (--adaptive is --method adaptive)")
        return "adaptive"
    _check_adaptive_flags(args, args.method == "adaptive")
    return str(args.method)


def _check_adaptive_flags(args: argparse.Namespace, adaptive_in_use: bool) -> None:
    given = [f"--{f.replace('_', '-')}" for f in ADAPTIVE_FLAGS if getattr(args, f, None)]
    if given and not adaptive_in_use:
        from cotembed.errors import InputError

        raise InputError(f"{', '.join(given)}: only for adaptive questioning; add --adaptive")


def adaptive_options(args: argparse.Namespace, system: Any, helper: Any) -> dict[str, Any]:
    """Method options of ``adaptive`` from the flags; ``--calibrate`` fits its answer model on DATA
    with ``helper()``, a cot classifier of the same system and model."""
    from cotembed.errors import InputError

    options: dict[str, Any] = {}
    if args.confidence is not None:
        options["adaptive_confidence"] = args.confidence
    if args.max_questions is not None:
        options["adaptive_max_questions"] = args.max_questions
    if args.calibrate:
        import sys

        from cotembed.adaptive import fit_answer_model_on
        from cotembed.data import resolve_labels

        try:
            samples, _ = resolve_labels(_collect(args, args.calibrate), system.resolve_label)
            model = fit_answer_model_on(helper(), samples, use_labels=not args.calibrate_without_labels)
        except InputError as exc:
            raise type(exc)(f"--calibrate {' '.join(args.calibrate)}: {exc}") from exc
        if model.n_failed and not args.quiet:
            print(f"--calibrate: {model.n_failed} input(s) could not be used and were left out", file=sys.stderr)
        options["adaptive_answer_model"] = model
    elif args.calibrate_without_labels:
        raise InputError("--calibrate-without-labels needs --calibrate DATA")
    return options


def add_adaptive_options(p: argparse.ArgumentParser) -> None:
    from cotembed.adaptive import DEFAULT_CONFIDENCE

    g = p.add_argument_group("adaptive questioning")
    g.add_argument("--adaptive", action="store_true",
                   help="ask one question at a time, the most informative next, and stop when confident (method adaptive)")
    g.add_argument("--confidence", type=bounded_float(0.0, 1.0), default=None, metavar="P",
                   help=f"stop once the top class's posterior reaches P, in (0, 1] (default: {DEFAULT_CONFIDENCE:g})")
    g.add_argument("--max-questions", type=bounded_int(1, 1_000_000), default=None, metavar="K",
                   help="ask at most K questions per input (default: as many as needed)")
    g.add_argument("--calibrate", action="append", default=None, metavar="DATA",
                   help="estimate how reliably each question answers from DATA (a folder or manifest; labels counted "
                        "if present, else estimated without them), so unreliable questions are asked later; repeatable")
    g.add_argument("--calibrate-without-labels", action="store_true",
                   help="ignore the labels of the --calibrate data (estimate from agreement between questions)")


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """Settings of the method zoo given on the command line (the defaults live in scoring.zoo)."""
    options: dict[str, Any] = {}
    if getattr(args, "templates", None):
        options["templates"] = read_templates(args.templates)
    if getattr(args, "random_seeds", None):
        options["random_seeds"] = args.random_seeds
    return options


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


def add_zoo_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--templates", metavar="FILE", default=None,
                   help="name templates for the ensemble method, one per line with {} (default: a CLIP-style set)")
    p.add_argument("--random-seeds", type=seed_list, default=None, metavar="S,S,...",
                   help="seeds of random-control, one run each; eval reports mean and spread (default: 0,1,2,3,4)")


def run_info(clf: Any, method: str, system_path: str) -> dict[str, Any]:
    """What makes a result reproducible: model, system fingerprint, method, temperature."""
    info = {
        "system": {"name": clf.system.name, "path": system_path, "hash": clf.system.fingerprint},
        "model": clf.encoder.model_key,
        "method": method,
        "temperature": clf.temperature,
        "hybrid_weight": clf.hybrid_weight,
    }
    if method == "adaptive":
        from cotembed.scoring import get_method
        from cotembed.scoring.zoo import method_settings

        info["method_options"] = method_settings([get_method(method)], clf.config)
    return info


def cmd_classify(args: argparse.Namespace) -> int:
    from cotembed.data import text_samples
    from cotembed.encoders import DEFAULT_MODEL
    from cotembed.reporting.text import predictions_table

    method = adaptive_method(args)
    data_or_embeddings(args, "inputs", "INPUTS")
    system = load_system(args.system)
    if args.engine == "ray":
        from cotembed.cli.embed import classify_on_ray

        return classify_on_ray(args, system, method)
    samples = [] if args.embeddings else text_samples(args.inputs) if args.text else _collect(args, args.inputs)
    with Resources(args) as res:
        if args.embeddings:
            from cotembed.cli.embed import predictions_from_set, stored_embeddings

            stored, spec = stored_embeddings(args, res, None if args.model == DEFAULT_MODEL else args.model)
            clf = _classifier(args, res, system, spec, method)
            predictions, errors = predictions_from_set(clf, stored, args.top_k), stored.errors
        else:
            clf = _classifier(args, res, system, args.model, method)
            predictions, errors = clf.classify_samples(samples, top_k=args.top_k)
        payload = {**run_info(clf, method, args.system), "predictions": [p.to_dict() for p in predictions], "errors": [e.to_dict() for e in errors]}
    if args.output:
        write_rows(args.output, [_prediction_row(p) for p in payload["predictions"]], payload)
    emit(args, payload, lambda: predictions_table(predictions, errors))
    return EXIT_FAILURE if errors or not predictions else EXIT_OK


def _prediction_row(p: dict[str, Any]) -> dict[str, Any]:
    row = {k: p[k] for k in ("input", "prediction", "score")}
    row["label"] = p.get("label")
    row["top"] = "; ".join(f"{t['class']}={t['score']:.4f}" for t in p["top"])
    return row


def cmd_eval(args: argparse.Namespace) -> int:
    from cotembed.cli.report import HtmlReport
    from cotembed.data import resolve_labels
    from cotembed.encoders import DEFAULT_MODEL, parse_spec
    from cotembed.reporting.text import eval_tables
    from cotembed.scoring import DEFAULT_EVAL_METHODS, parse_methods

    methods = parse_methods(args.methods, ADAPTIVE_EVAL_METHODS if args.adaptive else DEFAULT_EVAL_METHODS)
    if args.adaptive and "adaptive" not in methods:
        methods = (*methods, "adaptive")
    _check_adaptive_flags(args, "adaptive" in methods)
    specs = list(dict.fromkeys(args.model or [DEFAULT_MODEL]))
    for spec in specs:
        parse_spec(spec)
    html = HtmlReport.from_args(args)
    system = load_system(args.system)
    data_or_embeddings(args, "data", "DATA")
    if args.embeddings and (html or len(specs) > 1):
        from cotembed.errors import InputError

        raise InputError("--embeddings: one model's embeddings, so one --model and no --html")
    samples, skipped = ([], []) if args.embeddings else resolve_labels(_collect(args, args.data), system.resolve_label, args.ignore_unknown)
    reports = []
    with Resources(args) as res:
        for spec in specs:
            if args.embeddings:
                from cotembed.cli.embed import resolve_stored_labels, stored_embeddings
                from cotembed.evaluate import evaluate

                stored, spec = stored_embeddings(args, res, args.model[0] if args.model else None)
                clf = _classifier(args, res, system, spec, methods[0], methods)
                report = evaluate(clf.scorer_for(methods), resolve_stored_labels(stored, system, args.ignore_unknown), methods)
            else:
                clf = _classifier(args, res, system, spec, methods[0], methods)
                report = html.evaluate(clf, samples, methods, skipped) if html else clf.evaluate(samples, methods, skipped)
            report.system["path"] = args.system
            if args.calibrate:
                report.method_options["adaptive_calibration_data"] = list(args.calibrate)
            reports.append(report)
    payload: dict[str, Any] = reports[0].to_dict() if len(reports) == 1 else {"models": [r.to_dict() for r in reports]}
    if html:
        payload["html"] = html.write()
    if args.output:
        write_rows(args.output, [_metrics_row(r, m) for r in reports for m in r.methods], payload)
    emit(args, payload, lambda: eval_tables(reports) + (html.summary() if html else ""))
    failed = any(r.errors for r in reports) or any(r.n_inputs == 0 for r in reports)
    return EXIT_FAILURE if failed else EXIT_OK


def _metrics_row(report: Any, method: str) -> dict[str, Any]:
    result = report.methods[method].to_dict()
    keys = ("acc1", "acc5", "mean_per_class_recall", "ece", "correct", "total", "text_prompts")
    spread = {f"{k}_std": v["std"] for k, v in result.get("spread", {}).items() if k in ("acc1", "acc5")}
    return {"model": report.model, "system": report.system["hash"], "method": method, "temperature": report.temperature,
            **{k: result[k] for k in keys}, **spread}


def cmd_explain(args: argparse.Namespace) -> int:
    from cotembed.reporting.text import adaptive_explanation_table, explanation_table

    method = adaptive_method(args)
    system = load_system(args.system)
    with Resources(args) as res:
        clf = _classifier(args, res, system, args.model, method)
        as_text = args.text or set(clf.encoder.modalities) == {"text"}
        explanation = clf.explain(**({"text": args.input} if as_text else {"image": args.input}), top_k=args.top_k)
        if method == "adaptive":
            from cotembed.adaptive import explain_adaptive

            embedding = clf.embed(**({"texts": [args.input]} if as_text else {"images": [args.input]}))
            trace = explain_adaptive(clf, embedding[0])
            emit(args, {**explanation.to_dict(), "adaptive": trace.to_dict()}, lambda: adaptive_explanation_table(explanation, trace))
            return EXIT_OK
    emit(args, explanation.to_dict(), lambda: explanation_table(explanation))
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from cotembed.encoders import available_models
    from cotembed.reporting.text import models_table

    models = available_models()
    emit(args, {"models": models}, lambda: models_table(models))
    return EXIT_OK


def register(sub: Any) -> None:
    from cotembed.cli.embed import add_engine_options
    from cotembed.cli.report import add_report_options
    from cotembed.scoring import method_names

    p = sub.add_parser("validate", help="check a system file and summarise it")
    p.add_argument("system", help="system file (.yaml or .json)")
    add_format(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("classify", help="predict classes for images or texts")
    p.add_argument("system")
    p.add_argument("inputs", nargs="*", help="image files, folders, or CSV/JSONL manifests (path,label or text,label)")
    p.add_argument("--text", action="store_true", help="the inputs are literal texts to classify, not paths")
    add_embeddings_option(p)
    add_engine_options(p)
    add_model_options(p)
    add_zoo_options(p)
    add_adaptive_options(p)
    p.add_argument("--top-k", type=bounded_int(1, 1000), default=3, help="classes to report per input (default: 3)")
    p.add_argument("--output", metavar="FILE", help="also write the predictions to FILE (.json, .csv or .jsonl)")
    add_format(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("eval", help="accuracy of several methods (and models) on labelled data")
    p.add_argument("system")
    p.add_argument("data", nargs="*", help="ImageFolder directories or CSV/JSONL manifests with labels")
    add_embeddings_option(p)
    add_model_options(p, method=False, several_models=True)
    p.add_argument("--methods", default=None,
                   help=f"comma-separated methods, of {', '.join(method_names())} (default: baseline,cot,hybrid; "
                        f"with --adaptive: {','.join(ADAPTIVE_EVAL_METHODS)})")
    add_zoo_options(p)
    add_adaptive_options(p)
    p.add_argument("--ignore-unknown", action="store_true", help="skip inputs whose label is not a class of the system")
    p.add_argument("--output", metavar="FILE", help="also write the metrics to FILE (.json: full report; .csv/.jsonl: a row per model and method)")
    add_report_options(p, with_html=True)
    add_format(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("explain", help="show each question's answers and the top classes for one input")
    p.add_argument("system")
    p.add_argument("input", help="an image path, or a text with --text")
    p.add_argument("--text", action="store_true", help="the input is a literal text, not an image path")
    add_model_options(p)
    add_zoo_options(p)
    add_adaptive_options(p)
    p.add_argument("--top-k", type=bounded_int(1, 1000), default=5, help="classes to show (default: 5)")
    add_format(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("models", help="list model backends and whether they are installed")
    add_format(p)
    p.set_defaults(func=cmd_models)
