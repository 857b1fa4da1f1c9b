"""``eval``: accuracy of several methods (and models) on labelled data; ``report`` runs the same evaluation."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cotembed.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    add_format,
    add_output,
    check_rows_path,
    data_or_embeddings,
    emit,
    model_options,
    write_rows,
)
from cotembed.cli._decisions import decision_options, write_plots
from cotembed.cli._examples import default_methods, examples_options
from cotembed.cli._html_page import HtmlReport, add_report_options
from cotembed.cli._methods import (
    ECE_HELP,
    add_evaluation_arguments,
    check_method_flags,
    method_classes,
    method_settings,
    switched_methods,
)
from cotembed.runs._evaluate import EvalRequest

EVAL_DESCRIPTION = ("Evaluate methods (and models) on labelled data and print the comparison table. "
                    "Writes nothing unless --output or --html says where. " + ECE_HELP)


def cmd_eval(args: argparse.Namespace) -> int:
    return run_eval(args, page=HtmlReport.from_args(args), metrics_output=args.output)


def eval_request(args: argparse.Namespace, page: HtmlReport | None) -> EvalRequest:
    """The request the flags describe: the methods to compare (a switch such as ``--adaptive`` brings
    the methods it is compared with), checked with the flags that need each other."""
    from cotembed.scoring import DEFAULT_EVAL_METHODS, parse_methods

    switched = switched_methods(args)
    default = tuple(dict.fromkeys(m for cls in method_classes() if cls.name in switched for m in (*cls.compare_with, cls.name)))
    methods = parse_methods(args.methods, default_methods(args, default or DEFAULT_EVAL_METHODS))
    methods = (*methods, *(m for m in switched if m not in methods))
    check_method_flags(args, methods)
    request = EvalRequest(
        system=args.system, data=tuple(args.data), embeddings=args.embeddings, models=tuple(args.model or ()),
        model=model_options(args), methods=tuple(methods), settings=method_settings(args), decisions=decision_options(args),
        examples=examples_options(args), ignore_unknown=bool(args.ignore_unknown), open_set=args.open_set,
        open_set_seed=args.open_set_seed, figures=bool(args.plot), page=page.options if page else None)
    request.check()
    return request


def run_eval(args: argparse.Namespace, page: HtmlReport | None, metrics_output: str | None) -> int:
    """``eval`` and ``report``: metrics of every method and model; the page and the metrics file
    only where their output flags say."""
    from cotembed.reporting._comparison import comparison_table
    from cotembed.reporting._text import decision_tables, eval_tables
    from cotembed.runs._evaluate import evaluate_run

    request = eval_request(args, page)
    if request.decisions.multi_label:
        return run_multilabel_eval(args, request, page, metrics_output)
    if metrics_output:
        check_rows_path("--output", metrics_output)
    data_or_embeddings(args, "data", "DATA")
    result = evaluate_run(request)
    for notice in result.notices:
        print(notice, file=sys.stderr)
    reports = list(result.reports)
    for report, section in result.page_sections:
        if page:
            page.add(report, section)
    payload = result.to_dict()
    if result.figures:
        name = reports[0].system.get("name") or "system"
        payload["plots"] = write_plots(args, dict(result.figures), f"{name} on {reports[0].model}")
    if page:
        payload["html"] = page.write()
    if metrics_output:
        write_rows(args, metrics_output, [_metrics_row(r, m) for r in reports for m in r.methods], payload)
    summary = "\n\n" + comparison_table(reports) if len(reports) > 1 else ""
    emit(args, payload, lambda: eval_tables(reports) + summary + decision_tables(reports) + (page.summary() if page else ""))
    return EXIT_OK if result.ok else EXIT_FAILURE


def _metrics_row(report: Any, method: str) -> dict[str, Any]:
    result = report.methods[method].to_dict()
    keys = ("acc1", "acc5", "mean_per_class_recall", "ece", "correct", "total", "text_prompts")
    spread = {f"{k}_std": v["std"] for k, v in result.get("spread", {}).items() if k in ("acc1", "acc5")}
    return {"model": report.model, "system": report.system["hash"], "method": method, "temperature": report.temperature,
            **{k: result[k] for k in keys}, **spread}


def run_multilabel_eval(args: argparse.Namespace, request: EvalRequest, page: HtmlReport | None,
                        metrics_output: str | None) -> int:
    """``eval --multi-label``: its own path, since labels may name several classes; the rows
    (``--output``), the per-class bars (``--plot``) and the page (``--html``, ``report``) where asked for."""
    from pathlib import Path

    from cotembed.cli._common import guarded_path
    from cotembed.reporting._multilabel import plot_multilabel
    from cotembed.reporting._text import multilabel_table
    from cotembed.runs._evaluate import evaluate_multilabel

    request.check_multilabel()
    if metrics_output:
        check_rows_path("--output", metrics_output)
    plot = guarded_path(args, "--plot", args.plot, "plot") if args.plot else None
    result = evaluate_multilabel(request)
    for notice in result.notices:
        print(notice, file=sys.stderr)
    payload = result.to_dict()
    if plot:
        payload["plots"] = [str(plot_multilabel(result.multi_label, Path(plot), result.title))]
    if page:
        payload["html"] = page.write_multilabel(payload)
    if metrics_output:
        write_rows(args, metrics_output, result.rows(), payload)
    emit(args, payload, lambda: multilabel_table(payload) + (page.summary() if page else ""))
    return EXIT_OK if result.ok else EXIT_FAILURE


def register(sub: Any) -> None:
    p = sub.add_parser("eval", help="accuracy of several methods (and models) on labelled data", description=EVAL_DESCRIPTION)
    add_evaluation_arguments(p)
    add_output(p, "--output", metavar="FILE",
               help="also write the metrics to FILE (.json: full report; .csv/.jsonl: a row per model and method)")
    add_report_options(p, with_html=True)
    add_format(p)
    p.set_defaults(func=cmd_eval)
