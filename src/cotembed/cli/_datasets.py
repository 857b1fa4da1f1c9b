"""``cotembed datasets list|build NAME``: real-data benchmark tasks from installed public sources."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cotembed.cli._common import EXIT_OK, Parser, add_format, bounded_int, emit

DEFAULT_OUT = ".cotembed-data/realdata"
BUILDERS = "cotembed_experiments.datasets"
"""The builders live in a sibling package, reached by import string."""


def _builders() -> Any:
    import importlib

    return importlib.import_module(BUILDERS)


def cmd_list(args: argparse.Namespace) -> int:
    from cotembed.reporting._text import table

    tasks = [{"name": t.name, "regime": t.regime, "description": t.description,
              "sources": [s.package for s in t.sources], "per_class": t.per_class} for t in _builders().TASKS.values()]
    rows = [("name", "regime", "sources", "description")] + [
        (t["name"], t["regime"], ", ".join(t["sources"]), t["description"]) for t in tasks]
    emit(args, {"datasets": tasks}, lambda: table(rows, right_align_from=99))
    return EXIT_OK


def cmd_build(args: argparse.Namespace) -> int:
    builders = _builders()
    built = []
    for name in args.names:
        if not args.quiet:
            print(f"building {name} ...", file=sys.stderr)
        result = builders.build(name, args.out, per_class=args.per_class, seed=args.seed, install=not args.no_install)
        built.append({"name": result.name, "csv": str(result.csv_path), "manifest": str(result.manifest_path),
                      "rows": result.n_rows, "classes": result.n_classes})
    emit(args, {"built": built}, lambda: "\n".join(f"{b['name']}: {b['rows']} rows, {b['classes']} classes -> {b['csv']} "
                                                   f"(manifest {b['manifest']})" for b in built))
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("datasets", help="build real-data benchmark tasks from installed public sources")
    verbs = p.add_subparsers(dest="datasets_verb", required=True, metavar="VERB", parser_class=Parser)
    q = verbs.add_parser("list", help="the tasks that can be built, their regime and sources")
    add_format(q)
    q.set_defaults(func=cmd_list)
    q = verbs.add_parser("build", help="write NAME/data.csv (id,text,label) and NAME/manifest.json under --out")
    q.add_argument("names", nargs="+", metavar="NAME", help="task names (see `cotembed datasets list`)")
    q.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    q.add_argument("--per-class", type=bounded_int(1, 100_000), default=None,
                   help="at most this many items per class (default: the task's own cap)")
    q.add_argument("--seed", type=bounded_int(0, 2**31 - 1), default=0, help="seed of the per-class sampling (default: 0)")
    q.add_argument("--no-install", action="store_true", help="never run apt-get; fail with the command to run instead")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    add_format(q)
    q.set_defaults(func=cmd_build)
