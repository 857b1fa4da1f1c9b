"""The HTML report: the ``report`` verb, and ``eval --html FILE`` which shares its machinery.

``report`` is ``eval`` whose main output is the page: it prints the same tables
(or the same JSON, with an ``html`` entry naming the file and its size) and
writes a self-contained HTML file that needs no network to open.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any, Sequence

from cotembed.cli.common import bounded_int, seed_int
from cotembed.errors import InputError

DEFAULT_REPORT = "report.html"
REPORT_SUFFIXES = (".html", ".htm")
EXAMPLE_OPTIONS: dict[str, Any] = {"curve": None, "max_examples": 24, "example_seed": 0, "thumb_size": 96, "title": None}
"""Page options and their defaults; with ``eval`` they are only valid next to ``--html``."""


def add_report_options(p: argparse.ArgumentParser, with_html: bool) -> None:
    """Options of the page; ``with_html`` adds ``--html FILE`` (for ``eval``), and the others then need it."""
    if with_html:
        p.add_argument("--html", metavar="FILE.html", default=None,
                       help="also write a self-contained HTML report (metrics, confusion heatmaps, misclassified inputs)")
    # Defaults stay None here so that eval can tell a page option given without --html.
    p.add_argument("--curve", metavar="CURVE.json", default=None,
                   help="embed a test-time-compute curve written by `cotembed curve --output CURVE.json`")
    p.add_argument("--max-examples", type=bounded_int(0, 1000), default=None,
                   help=f"misclassified inputs shown per method, a seeded sample (default: {EXAMPLE_OPTIONS['max_examples']})")
    p.add_argument("--example-seed", type=seed_int, default=None,
                   help=f"seed of that sample (default: {EXAMPLE_OPTIONS['example_seed']})")
    p.add_argument("--thumb-size", type=bounded_int(16, 512), default=None,
                   help=f"thumbnail size in pixels, embedded in the page (default: {EXAMPLE_OPTIONS['thumb_size']})")
    p.add_argument("--title", default=None, help="title of the page (default: system and model)")


class HtmlReport:
    """Collects one section per evaluated model while ``eval`` runs, then writes the page.

    The curve file and the output path are checked when it is made, before any
    encoding, so a typo costs nothing.
    """

    def __init__(self, args: argparse.Namespace):
        from cotembed.reporting.html import load_curve

        self.path = Path(args.html)
        if self.path.suffix.lower() not in REPORT_SUFFIXES:
            raise InputError(f"--html {self.path}: the report is an HTML file; name it with .html")
        if self.path.is_dir():
            raise InputError(f"--html {self.path}: is a folder; give a file name ending in .html")
        options = {k: (default if getattr(args, k, None) is None else getattr(args, k)) for k, default in EXAMPLE_OPTIONS.items()}
        self.curve = load_curve(options["curve"]) if options["curve"] else None
        self.max_examples = int(options["max_examples"])
        self.seed = int(options["example_seed"])
        self.thumb_px = int(options["thumb_size"])
        self.title: str | None = options["title"]
        self._sections: list[tuple[Any, dict[str, Any]]] = []

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "HtmlReport | None":
        if getattr(args, "html", None):
            return cls(args)
        given = [f"--{k.replace('_', '-')}" for k in EXAMPLE_OPTIONS if getattr(args, k, None) is not None]
        if given:
            raise InputError(f"{', '.join(given)}: only used with --html FILE.html (or use `cotembed report`)")
        return None

    def evaluate(self, clf: Any, samples: Sequence[Any], methods: Sequence[str], skipped: Sequence[Any] = ()) -> Any:
        """``clf.evaluate`` that keeps the embeddings long enough to pick and explain misclassified inputs."""
        from cotembed.evaluate import evaluate
        from cotembed.reporting.html import report_section

        data = clf.labelled_embedding_set(samples, skipped)
        # With the option prompts too, a baseline's mistakes are explained question by question.
        scorer = clf.scorer_for(tuple(dict.fromkeys((*methods, "cot"))))
        report = evaluate(scorer, data, methods)
        section = report_section(report, scorer, data, max_examples=self.max_examples, seed=self.seed, thumb_px=self.thumb_px,
                                 max_pixels=getattr(clf, "max_pixels", None))
        self._sections.append((report, section))
        return report

    def write(self) -> dict[str, Any]:
        """Render and write the page; what the JSON output says about it."""
        from cotembed.reporting.html import render_report, write_report

        sections = []
        for report, section in self._sections:
            section["eval"]["system"] = dict(report.system)  # the caller adds the system's path after evaluating
            sections.append(section)
        size = write_report(self.path, render_report(sections, self.curve, self.title))
        shown = sum(len(m["shown"]) for s in sections for m in s["examples"]["methods"].values())
        self.info = {"path": str(self.path), "bytes": size, "examples_shown": shown, "curve": self.curve is not None}
        return self.info

    def summary(self) -> str:
        return f"\nwrote {self.info['path']} ({self.info['bytes']:,} bytes, {self.info['examples_shown']} misclassified inputs shown)"


def cmd_report(args: argparse.Namespace) -> int:
    from cotembed.cli.classify import cmd_eval

    if args.html:
        raise InputError("report: the page is written to --output FILE.html (--html is for eval)")
    args.html, args.output = args.output, None
    return cmd_eval(args)


def register(sub: Any) -> None:
    """``report`` takes every option of ``eval`` (copied from its parser, so the two never drift apart),
    with ``--output`` naming the page instead of a metrics file."""
    evaluate_parser = sub.choices["eval"]
    p = sub.add_parser("report", parents=[copy.deepcopy(evaluate_parser)], conflict_handler="resolve",  # a copy: resolving must not strip eval's flags
                       help="evaluate and write a self-contained HTML report (open it in any browser, offline)",
                       description="Evaluate like `eval`, then write a self-contained HTML page: metrics, per-class accuracy, "
                                   "confusion heatmaps, per-question accuracy, the curve (--curve) and misclassified inputs.")
    p.add_argument("--output", metavar="FILE.html", default=DEFAULT_REPORT, help=f"where to write the page (default: {DEFAULT_REPORT})")
    p.add_argument("--html", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_report)
