"""The HTML page that ``eval --html FILE`` and the ``report`` verb write: its options and its writer.

Below both verbs (neither imports the other through it): ``eval`` collects a section per
model here while it runs, and ``report`` is ``eval`` with the page as its main output.
"""

from __future__ import annotations

import argparse
from typing import Any

from cotembed.cli._common import add_output, bounded_int, guarded_path, seed_int
from cotembed.errors import InputError
from cotembed.runs._evaluate import PageOptions

DEFAULT_REPORT = "report.html"
REPORT_SUFFIXES = (".html", ".htm")
EXAMPLE_OPTIONS: dict[str, Any] = {"curve": None, "max_examples": 24, "example_seed": 0, "thumb_size": 96, "title": None}
"""Page options and their defaults; with ``eval`` they are only valid next to ``--html``."""


def add_report_options(p: argparse.ArgumentParser, with_html: bool) -> None:
    """Options of the page; ``with_html`` adds ``--html FILE`` (for ``eval``), and the others then need it."""
    if with_html:
        add_output(p, "--html", metavar="FILE.html", default=None,
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

    def __init__(self, args: argparse.Namespace, path: str, flag: str = "--html"):
        from cotembed.reporting._html import load_curve

        self.args, self.flag = args, flag
        self.path = guarded_path(args, flag, path, flag.lstrip("-"))
        if self.path.suffix.lower() not in REPORT_SUFFIXES:
            raise InputError(f"{flag} {self.path}: the report is an HTML file; name it with .html")
        if self.path.is_dir():
            raise InputError(f"{flag} {self.path}: is a folder; give a file name ending in .html")
        options = {k: (default if getattr(args, k, None) is None else getattr(args, k)) for k, default in EXAMPLE_OPTIONS.items()}
        self.curve = load_curve(options["curve"]) if options["curve"] else None
        self.max_examples = int(options["max_examples"])
        self.seed = int(options["example_seed"])
        self.thumb_px = int(options["thumb_size"])
        self.title: str | None = options["title"]
        self._sections: list[tuple[Any, dict[str, Any]]] = []

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "HtmlReport | None":
        """``eval``: the page of ``--html``, if asked for; page options without it are an error."""
        if getattr(args, "html", None):
            return cls(args, args.html)
        given = [f"--{k.replace('_', '-')}" for k in EXAMPLE_OPTIONS if getattr(args, k, None) is not None]
        if given:
            raise InputError(f"{', '.join(given)}: only used with --html FILE.html (or use `cotembed report`)")
        return None

    @property
    def options(self) -> PageOptions:
        """What the run computes for the page: the seeded sample of misclassified inputs."""
        return PageOptions(max_examples=self.max_examples, seed=self.seed, thumb_px=self.thumb_px)

    def add(self, report: Any, section: dict[str, Any]) -> None:
        """One model's section, computed by the run (:func:`cotembed.runs.evaluate_run`)."""
        self._sections.append((report, section))

    def write(self) -> dict[str, Any]:
        """Render and write the page; what the JSON output says about it."""
        from cotembed.reporting._html import render_report, write_report

        sections = []
        for report, section in self._sections:
            section["eval"]["system"] = dict(report.system)  # the caller adds the system's path after evaluating
            section["decisions"] = {k: report.extras[k] for k in ("conformal", "abstention", "open_set") if k in report.extras}
            sections.append(section)
        path = guarded_path(self.args, self.flag, self.path, self.flag.lstrip("-"))
        size = write_report(path, render_report(sections, self.curve, self.title))
        shown = sum(len(m["shown"]) for s in sections for m in s["examples"]["methods"].values())
        self.info = {"path": str(self.path), "bytes": size, "examples_shown": shown, "curve": self.curve is not None}
        return self.info

    def write_multilabel(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``eval --multi-label``: render and write its page instead."""
        from cotembed.reporting._html import write_report
        from cotembed.reporting._multilabel import render_multilabel_report

        path = guarded_path(self.args, self.flag, self.path, self.flag.lstrip("-"))
        size = write_report(path, render_multilabel_report(payload, self.title))
        self.info = {"path": str(self.path), "bytes": size}
        return self.info

    def summary(self) -> str:
        shown = f", {self.info['examples_shown']} misclassified inputs shown" if "examples_shown" in self.info else ""
        return f"\nwrote {self.info['path']} ({self.info['bytes']:,} bytes{shown})"
