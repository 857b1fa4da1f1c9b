"""``validate``: check a system file and summarise it."""

from __future__ import annotations

import argparse
from typing import Any

from cotembed.cli._common import EXIT_OK, add_format, emit, load_system


def cmd_validate(args: argparse.Namespace) -> int:
    from cotembed.reporting._text import validate_table

    summary = {"path": args.system, **load_system(args.system).summary()}
    emit(args, {"valid": True, **summary}, lambda: validate_table(summary))
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check a system file and summarise it")
    p.add_argument("system", help="system file (.yaml or .json)")
    add_format(p)
    p.set_defaults(func=cmd_validate)
