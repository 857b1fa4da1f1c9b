"""The ``report`` verb: ``eval`` whose main output is the HTML page.

It prints the same tables (or the same JSON, with an ``html`` entry naming the file and
its size) and writes a self-contained HTML file that needs no network to open.
"""

from __future__ import annotations

import argparse
from typing import Any

from cotembed.cli._common import add_format, add_output
from cotembed.cli._eval import run_eval
from cotembed.cli._html_page import HtmlReport, add_report_options
from cotembed.cli._methods import ECE_HELP, add_evaluation_arguments

DEFAULT_REPORT = "report.html"


def cmd_report(args: argparse.Namespace) -> int:
    return run_eval(args, page=HtmlReport(args, args.output, "--output"), metrics_output=None)


def register(sub: Any) -> None:
    """``report`` takes every option of ``eval`` (added by the same function, so the two never drift
    apart), with ``--output`` naming the page instead of a metrics file."""
    p = sub.add_parser("report", help="evaluate and write a self-contained HTML report (open it in any browser, offline)",
                       description="Evaluate like `eval`, then write a self-contained HTML page: metrics, per-class accuracy, "
                                   "confusion heatmaps, per-question accuracy, the curve (--curve) and misclassified inputs. "
                                   + ECE_HELP)
    add_evaluation_arguments(p)
    add_output(p, "--output", metavar="FILE.html", default=DEFAULT_REPORT, help=f"where to write the page (default: {DEFAULT_REPORT})")
    add_report_options(p, with_html=False)
    add_format(p)
    p.set_defaults(func=cmd_report)
