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
    add_output,
    bounded_float,
    bounded_int,
    check_model_inputs,
    check_rows_path,
    data_or_embeddings,
    emit,
    labelled_samples,
    load_system,
    seed_int,
    write_rows,
)
from cotembed.cli.decisions import (
    add_probability_flags,
    apply_decisions,
    check_flags,
    eval_sections,
    multilabel_eval,
    wants_sections,
    write_plots,
)
from cotembed.cli.examples import add_examples_flags, default_methods, provenance, with_examples
from cotembed.cli.html_page import HtmlReport, add_report_options


def cmd_validate(args: argparse.Namespace) -> int:
    from cotembed.reporting.text import validate_table

    summary = {"path": args.system, **load_system(args.system).summary()}
    emit(args, {"valid": True, **summary}, lambda: validate_table(summary))
    return EXIT_OK


def _collect(args: argparse.Namespace, inputs: list[str]) -> Any:
    from cotembed.data import collect_samples

    return collect_samples(inputs, allow_outside=args.allow_outside_paths)


def _classifier(args: argparse.Namespace, res: Resources, system: Any, spec: str, method: str,
                methods: tuple[str, ...] = (), inputs: Any = ()) -> Any:
    from cotembed.classifier import CoTClassifier
    from cotembed.errors import InputError

    clf = CoTClassifier(system, res.encoder(spec), method=method, temperature=args.temperature,
                        hybrid_weight=args.hybrid_weight, cache=res.cache, batch_size=args.batch_size,
                        progress=not args.quiet, method_options=method_options(args), max_pixels=args.max_pixels,
                        probabilities=getattr(args, "probabilities", "calibrated"),
                        transductive=bool(getattr(args, "transductive", False)))
    clf = with_examples(args, clf, methods or (method,), inputs)
    if getattr(args, "calibrate", None):
        import sys

        from cotembed.data import resolve_labels

        try:
            samples, _ = resolve_labels(_collect(args, args.calibrate), system.resolve_label)
            clf = clf.calibrated(samples, methods or (method,), use_labels=not args.calibrate_without_labels)
        except InputError as exc:
            raise type(exc)(f"--calibrate {' '.join(args.calibrate)}: {exc}") from exc
        if clf.calibration_failures and not args.quiet:
            print(f"--calibrate: {clf.calibration_failures} input(s) could not be used and were left out", file=sys.stderr)
    return clf


def _method_classes() -> list[Any]:
    from cotembed.scoring import method_class, method_names

    return [method_class(name) for name in method_names()]


def _switches(args: argparse.Namespace) -> list[str]:
    """Methods named by their shorthand switch (``--adaptive``)."""
    return [cls.name for cls in _method_classes() if cls.switch_help and getattr(args, _dest(cls.name), False)]


def _dest(name: str) -> str:
    return name.replace("-", "_")


def chosen_method(args: argparse.Namespace) -> str:
    """classify/explain: a switch (``--adaptive``) is ``--method NAME``; method flags need their method."""
    from cotembed.errors import InputError

    switched = _switches(args)
    if len(switched) > 1:
        raise InputError(f"{', '.join('--' + n for n in switched)}: choose one")
    if switched:
        if args.method not in ("cot", switched[0]):
            raise InputError(f"--{switched[0]} and --method {args.method}: choose one (--{switched[0]} is --method {switched[0]})")
        method = switched[0]
    else:
        method = str(args.method)
    _check_method_flags(args, (method,))
    return method


def _learns(cls: Any) -> bool:
    from cotembed.scoring import ScoringMethod

    return cls.fit is not ScoringMethod.fit


def _check_method_flags(args: argparse.Namespace, in_use: tuple[str, ...]) -> None:
    """Every method flag given belongs to a method in use; calibration data needs a method that learns."""
    from cotembed.errors import InputError

    used_flags = {p.flag for cls in _method_classes() if cls.name in in_use for p in cls.parameters}  # flags methods share
    for cls in _method_classes():
        given = [p.flag for p in cls.parameters if p.flag and p.flag not in used_flags and getattr(args, p.name, None) is not None]
        if given and cls.name not in in_use:
            how = f"add --{cls.name}" if cls.switch_help else f"choose method {cls.name}"
            raise InputError(f"{', '.join(given)}: only for {cls.title or 'method ' + cls.name}; {how}")
    if getattr(args, "calibrate", None):
        learners = [cls for cls in _method_classes() if _learns(cls)]
        if not any(cls.name in in_use for cls in learners):
            hint = " or ".join(f"--{c.name}" if c.switch_help else f"method {c.name}" for c in learners)
            raise InputError(f"--calibrate: only for methods that learn from data; add {hint}")
    elif getattr(args, "calibrate_without_labels", False):
        raise InputError("--calibrate-without-labels needs --calibrate DATA")


def _flag_type(param: Any) -> Any:
    """The argparse ``type`` of a declared parameter's flag."""
    from importlib import import_module

    from cotembed.cli.common import _number

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
    for cls in _method_classes():
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
        if _learns(cls) and "--calibrate" not in seen:
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
    for cls in _method_classes():
        for q in cls.parameters:
            if q.flag and getattr(args, q.name, None) is not None:
                value = getattr(args, q.name)
                # Files are read here, not by argparse, so their errors name the file and line (exit 2).
                options[cls.option_prefix + q.name] = _flag_type(q)(value) if _reads_file(q) else value
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


def run_info(clf: Any, method: str, system_path: str) -> dict[str, Any]:
    """What makes a result reproducible: model, system fingerprint, method, temperature."""
    info = {
        "system": {"name": clf.system.name, "path": system_path, "hash": clf.system.fingerprint},
        "model": clf.encoder.model_key,
        "method": method,
        "temperature": clf.temperature,
        "hybrid_weight": clf.hybrid_weight,
    }
    used = clf.scored_with or clf.scoring_method  # as fitted on the batch, for methods that learn from it
    settings = used.settings(clf.compiled)  # a wrapper without parameters (--transductive) still reports its own
    if settings:
        info["method_options"] = settings
    info["probabilities"] = clf.config.probabilities
    info["decisions"] = clf.decisions.to_dict()
    return info


def cmd_classify(args: argparse.Namespace) -> int:
    from cotembed.data import Sample
    from cotembed.encoders import DEFAULT_MODEL
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
               else _collect(args, args.inputs))
    if samples:
        check_model_inputs([args.model], samples)
    if args.output:
        check_rows_path("--output", args.output)
    with Resources(args) as res:
        if args.embeddings:
            from cotembed.cli.embed import predictions_from_set, stored_embeddings

            stored, spec = stored_embeddings(args, res, None if args.model == DEFAULT_MODEL else args.model)
            clf = apply_decisions(args, _classifier(args, res, system, spec, method))
            predictions, errors = predictions_from_set(clf, stored, args.top_k), stored.errors
        else:
            clf = apply_decisions(args, _classifier(args, res, system, args.model, method, inputs=samples))
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


def cmd_eval(args: argparse.Namespace) -> int:
    return run_eval(args, page=HtmlReport.from_args(args), metrics_output=args.output)


def run_eval(args: argparse.Namespace, page: HtmlReport | None, metrics_output: str | None) -> int:
    """``eval`` and ``report``: metrics of every method and model; the page and the metrics file
    only where their output flags say."""
    from cotembed.encoders import DEFAULT_MODEL, parse_spec
    from cotembed.reporting.text import decision_tables, eval_tables
    from cotembed.scoring import DEFAULT_EVAL_METHODS, get_method, parse_methods

    switched = _switches(args)
    default = tuple(dict.fromkeys(m for cls in _method_classes() if cls.name in switched for m in (*cls.compare_with, cls.name)))
    methods = parse_methods(args.methods, default_methods(args, default or DEFAULT_EVAL_METHODS))
    methods = (*methods, *(m for m in switched if m not in methods))
    _check_method_flags(args, methods)
    check_flags(args, "eval")
    if args.multi_label:
        return run_multilabel_eval(args, methods[0])
    specs = list(dict.fromkeys(args.model or [DEFAULT_MODEL]))
    for spec in specs:
        parse_spec(spec)
    if metrics_output:
        check_rows_path("--output", metrics_output)
    system = load_system(args.system)
    data_or_embeddings(args, "data", "DATA")
    if args.embeddings and (page or len(specs) > 1):
        from cotembed.errors import InputError

        raise InputError("--embeddings: one model's embeddings, so one --model and no --html")
    samples, skipped = ([], []) if args.embeddings else labelled_samples(args, system, args.data, "DATA", specs)
    reports = []
    with Resources(args) as res:
        for spec in specs:
            if args.embeddings:
                from cotembed.cli.embed import resolve_stored_labels, stored_embeddings
                from cotembed.evaluation.evaluate import evaluate

                stored, spec = stored_embeddings(args, res, args.model[0] if args.model else None)
                clf = _classifier(args, res, system, spec, methods[0], methods)
                report = evaluate(clf.scorer_for(methods), resolve_stored_labels(stored, system, args.ignore_unknown), methods)
            else:
                clf = _classifier(args, res, system, spec, methods[0], methods, inputs=samples)
                report = page.evaluate(clf, samples, methods, skipped) if page else clf.evaluate(samples, methods, skipped)
            if args.examples or args.transductive:  # recorded where they were used
                report.method_options.update(provenance(args, clf, report.method_options))
            report.system["path"] = args.system
            if wants_sections(args):
                report.extras.update(eval_sections(args, clf, clf.labelled_embedding_set(samples, skipped), methods))
            if args.calibrate:
                for name in methods:
                    prefix = get_method(name).option_prefix
                    if _learns(type(get_method(name))):
                        report.method_options[f"{prefix}calibration_data"] = list(args.calibrate)
            reports.append(report)
    figures = [r.extras.pop("figures") for r in reports if "figures" in r.extras]
    payload: dict[str, Any] = reports[0].to_dict() if len(reports) == 1 else {"models": [r.to_dict() for r in reports]}
    if figures:
        payload["plots"] = write_plots(args, figures[0], f"{system.name or 'system'} on {reports[0].model}")
    if page:
        payload["html"] = page.write()
    if metrics_output:
        write_rows(args, metrics_output, [_metrics_row(r, m) for r in reports for m in r.methods], payload)
    from cotembed.reporting.comparison import comparison_table

    summary = "\n\n" + comparison_table(reports) if len(reports) > 1 else ""
    emit(args, payload, lambda: eval_tables(reports) + summary + decision_tables(reports) + (page.summary() if page else ""))
    failed = any(r.errors for r in reports) or any(r.n_inputs == 0 for r in reports)
    return EXIT_FAILURE if failed else EXIT_OK


def _metrics_row(report: Any, method: str) -> dict[str, Any]:
    result = report.methods[method].to_dict()
    keys = ("acc1", "acc5", "mean_per_class_recall", "ece", "correct", "total", "text_prompts")
    spread = {f"{k}_std": v["std"] for k, v in result.get("spread", {}).items() if k in ("acc1", "acc5")}
    return {"model": report.model, "system": report.system["hash"], "method": method, "temperature": report.temperature,
            **{k: result[k] for k in keys}, **spread}


def cmd_explain(args: argparse.Namespace) -> int:
    from cotembed.reporting.text import explanation_table

    method = chosen_method(args)
    system = load_system(args.system)
    with Resources(args) as res:
        clf = _classifier(args, res, system, args.model, method)
        as_text = args.text or set(clf.encoder.modalities) == {"text"}
        explanation = clf.explain(**({"text": args.input} if as_text else {"image": args.input}), top_k=args.top_k)
    emit(args, explanation.to_dict(), lambda: explanation_table(explanation))
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from cotembed.encoders import available_models
    from cotembed.reporting.text import models_table

    models = available_models()
    emit(args, {"models": models}, lambda: models_table(models))
    return EXIT_OK


SCORE_HELP = ("score: the method's score of the predicted class, for ranking the classes of one input, not a "
              "probability. cot: the sum over the questions of the probability that the input has the class's answer "
              "(0 to the number of questions; group weights scale each term); hybrid: that plus --hybrid-weight times the "
              "class name's probability; baseline: the cosine similarity of input and class name; cot-log and adaptive: a "
              "log-probability (0 at best, negative).")
CLASSIFY_DESCRIPTION = "Predict the class of each input (image files, folders, manifests, or texts with --text). " + SCORE_HELP
ECE_HELP = ("ECE: expected calibration error of the method's probability for its top class (15 equal-width bins): the "
            "mean gap between how confident the method is and how often it is right, as a fraction from 0 (calibrated) "
            "to 1; acc1/acc5: top-1/top-5 accuracy; mean recall: accuracy averaged over classes.")
EVAL_DESCRIPTION = ("Evaluate methods (and models) on labelled data and print the comparison table. "
                    "Writes nothing unless --output or --html says where. " + ECE_HELP)


def add_evaluation_arguments(p: argparse.ArgumentParser) -> None:
    """What ``eval`` and ``report`` both take: SYSTEM DATA... and the evaluation options (no outputs)."""
    from cotembed.scoring import method_names

    p.add_argument("system", help="system file (.yaml or .json)")
    p.add_argument("data", nargs="*", help="ImageFolder directories or CSV/JSONL/JSON manifests with labels (only read)")
    add_embeddings_option(p)
    add_model_options(p, method=False, several_models=True)
    p.add_argument("--methods", default=None,
                   help=f"comma-separated methods, of {', '.join(method_names())} (default: baseline,cot,hybrid"
                        + "".join(f"; with --{c.name}: {','.join((*c.compare_with, c.name))}" for c in _method_classes() if c.switch_help)
                        + ")")
    add_method_flags(p)
    p.add_argument("--ignore-unknown", action="store_true", help="skip inputs whose label is not a class of the system")
    add_probability_flags(p, "eval")
    add_examples_flags(p)


def register(sub: Any) -> None:
    from cotembed.cli.embed import add_engine_options

    p = sub.add_parser("validate", help="check a system file and summarise it")
    p.add_argument("system", help="system file (.yaml or .json)")
    add_format(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("classify", help="predict classes for images or texts", description=CLASSIFY_DESCRIPTION)
    p.add_argument("system")
    p.add_argument("inputs", nargs="*", help="image files, folders, or CSV/JSONL manifests (path,label or text,label)")
    p.add_argument("--text", action="store_true", help="the inputs are literal texts to classify, not paths")
    add_embeddings_option(p)
    add_engine_options(p)
    add_model_options(p)
    add_method_flags(p)
    add_probability_flags(p, "classify")
    add_examples_flags(p)
    p.add_argument("--top-k", type=bounded_int(1, 1000), default=3, help="classes to report per input (default: 3)")
    add_output(p, "--output", metavar="FILE", help="also write the predictions to FILE (.json, .csv or .jsonl)")
    add_format(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("eval", help="accuracy of several methods (and models) on labelled data", description=EVAL_DESCRIPTION)
    add_evaluation_arguments(p)
    add_output(p, "--output", metavar="FILE",
               help="also write the metrics to FILE (.json: full report; .csv/.jsonl: a row per model and method)")
    add_report_options(p, with_html=True)
    add_format(p)
    p.set_defaults(func=cmd_eval)

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

    p = sub.add_parser("models", help="list model backends and whether they are installed")
    add_format(p)
    p.set_defaults(func=cmd_models)


def run_multilabel_eval(args: argparse.Namespace, method: str) -> int:
    """``eval --multi-label``: its own path, since labels may name several classes."""
    from cotembed.encoders import DEFAULT_MODEL
    from cotembed.errors import InputError
    from cotembed.reporting.text import multilabel_table

    given = [f for f, dest in (("--html", "html"), ("--output", "output"), ("--plot", "plot"), ("--open-set", "open_set"),
                               ("--conformal", "conformal"), ("--abstain", "abstain"), ("--abstain-target", "abstain_target"))
             if getattr(args, dest, None) is not None]
    if given or len(args.model or []) > 1:
        raise InputError(f"--multi-label: {', '.join(given) or 'several --model'} not supported with it; "
                         "its report is the table or the JSON on stdout")
    system = load_system(args.system)
    spec = (args.model or [DEFAULT_MODEL])[0]
    with Resources(args) as res:
        clf = apply_decisions(args, _classifier(args, res, system, spec, method))
        payload = {**run_info(clf, method, args.system), **multilabel_eval(args, clf, args.data)}
    emit(args, payload, lambda: multilabel_table(payload))
    return EXIT_FAILURE if payload["errors"] else EXIT_OK
