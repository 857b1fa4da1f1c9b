"""``eval``: accuracy of several methods (and models) on labelled data; ``report`` runs the same evaluation."""

from __future__ import annotations

import argparse
from typing import Any

from cotembed.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    Resources,
    add_format,
    add_output,
    check_rows_path,
    data_or_embeddings,
    emit,
    labelled_samples,
    load_system,
    write_rows,
)
from cotembed.cli.decisions import apply_decisions, check_flags, eval_sections, multilabel_eval, wants_sections, write_plots
from cotembed.cli.examples import default_methods, provenance
from cotembed.cli.html_page import HtmlReport, add_report_options
from cotembed.cli.methods import (
    ECE_HELP,
    add_evaluation_arguments,
    build_classifier,
    check_method_flags,
    learns_from_data,
    method_classes,
    run_info,
    switched_methods,
)

EVAL_DESCRIPTION = ("Evaluate methods (and models) on labelled data and print the comparison table. "
                    "Writes nothing unless --output or --html says where. " + ECE_HELP)


def cmd_eval(args: argparse.Namespace) -> int:
    return run_eval(args, page=HtmlReport.from_args(args), metrics_output=args.output)


def run_eval(args: argparse.Namespace, page: HtmlReport | None, metrics_output: str | None) -> int:
    """``eval`` and ``report``: metrics of every method and model; the page and the metrics file
    only where their output flags say."""
    from cotembed.encoders import DEFAULT_MODEL, parse_spec
    from cotembed.reporting.text import decision_tables, eval_tables
    from cotembed.scoring import DEFAULT_EVAL_METHODS, get_method, parse_methods

    switched = switched_methods(args)
    default = tuple(dict.fromkeys(m for cls in method_classes() if cls.name in switched for m in (*cls.compare_with, cls.name)))
    methods = parse_methods(args.methods, default_methods(args, default or DEFAULT_EVAL_METHODS))
    methods = (*methods, *(m for m in switched if m not in methods))
    check_method_flags(args, methods)
    check_flags(args, "eval")
    if args.multi_label:
        return run_multilabel_eval(args, methods[0], page, metrics_output)
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
                clf = build_classifier(args, res, system, spec, methods[0], methods)
                report = evaluate(clf.scorer_for(methods), resolve_stored_labels(stored, system, args.ignore_unknown), methods)
            else:
                clf = build_classifier(args, res, system, spec, methods[0], methods, inputs=samples)
                report = page.evaluate(clf, samples, methods, skipped) if page else clf.evaluate(samples, methods, skipped)
            if args.examples or args.transductive:  # recorded where they were used
                report.method_options.update(provenance(args, clf, report.method_options))
            report.system["path"] = args.system
            if wants_sections(args):
                report.extras.update(eval_sections(args, clf, clf.labelled_embedding_set(samples, skipped), methods))
            if args.calibrate:
                for name in methods:
                    prefix = get_method(name).option_prefix
                    if learns_from_data(type(get_method(name))):
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


def run_multilabel_eval(args: argparse.Namespace, method: str, page: HtmlReport | None, metrics_output: str | None) -> int:
    """``eval --multi-label``: its own path, since labels may name several classes."""
    from pathlib import Path

    from cotembed.cli.common import guarded_path
    from cotembed.encoders import DEFAULT_MODEL
    from cotembed.errors import InputError
    from cotembed.evaluation.probabilities import multilabel_rows
    from cotembed.reporting.multilabel import plot_multilabel
    from cotembed.reporting.text import multilabel_table
    from cotembed.scoring.decisions import MULTILABEL_SCORE

    given = [f for f, dest in (("--open-set", "open_set"), ("--conformal", "conformal"), ("--abstain", "abstain"),
                               ("--abstain-target", "abstain_target")) if getattr(args, dest, None) is not None]
    if given or len(args.model or []) > 1:
        raise InputError(f"--multi-label: {', '.join(given) or 'several --model'} not supported with it "
                         "(sets, abstention and the open set are single-label decisions)")
    if metrics_output:
        check_rows_path("--output", metrics_output)
    plot = guarded_path(args, "--plot", args.plot, "plot") if args.plot else None
    system = load_system(args.system)
    spec = (args.model or [DEFAULT_MODEL])[0]
    with Resources(args) as res:
        clf = apply_decisions(args, build_classifier(args, res, system, spec, method))
        payload = {**run_info(clf, method, args.system), **multilabel_eval(args, clf, args.data)}
    if plot:
        payload["plots"] = [str(plot_multilabel(payload["multi_label"], Path(plot), f"{system.name or 'system'} on {payload['model']}"))]
    if page:
        payload["html"] = page.write_multilabel(payload)
    if metrics_output:
        run = {"model": payload["model"], "system": payload["system"]["hash"], "score": MULTILABEL_SCORE}
        write_rows(args, metrics_output, [{**run, **row} for row in multilabel_rows(payload["multi_label"])], payload)
    emit(args, payload, lambda: multilabel_table(payload) + (page.summary() if page else ""))
    return EXIT_FAILURE if payload["errors"] else EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("eval", help="accuracy of several methods (and models) on labelled data", description=EVAL_DESCRIPTION)
    add_evaluation_arguments(p)
    add_output(p, "--output", metavar="FILE",
               help="also write the metrics to FILE (.json: full report; .csv/.jsonl: a row per model and method)")
    add_report_options(p, with_html=True)
    add_format(p)
    p.set_defaults(func=cmd_eval)
