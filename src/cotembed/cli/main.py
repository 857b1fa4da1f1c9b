"""The ``cotembed`` command: builds the parser from the verb families and runs one verb.

Each family of verbs is one module with a ``register(subparsers)`` function; adding a
family is one entry in ``FAMILIES``. JSON goes to stdout, progress and logs to stderr.
Exit codes: 0 ok, 1 runtime failure (including any input that could not be used),
2 bad input. Under ``--format json`` a failure also prints ``{"error": {...}}`` on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Sequence

from cotembed import __version__
from cotembed.cli.common import EXIT_FAILURE, Parser, WriteGuard, dumps
from cotembed.errors import CotembedError, InputError

FAMILIES = (
    "cotembed.cli.classify",
    "cotembed.cli.critters",
    "cotembed.cli.diagnose",
    "cotembed.cli.evidence",
    "cotembed.cli.authoring",
    "cotembed.cli.report",
    "cotembed.cli.optimize",
    "cotembed.cli.reproduce",
    "cotembed.cli.serve",
    "cotembed.cli.studio",
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cotembed", description="Chain-of-thought classification with frozen embedding models.")
    parser.add_argument("--version", action="version", version=f"cotembed {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for family in FAMILIES:
        importlib.import_module(family).register(sub)
    return parser


def _wants_json(argv: Sequence[str]) -> bool:
    """Read --format from raw argv too, so usage errors are reported as JSON when asked."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--format" and i + 1 < len(argv):
            return argv[i + 1] == "json"
        if arg == "--format=json":
            return True
    return False


def _error_payload(exc: BaseException, exit_code: int) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc), "exit_code": exit_code}
    for field in ("source", "problems"):
        if hasattr(exc, field):
            error[field] = getattr(exc, field)
    return {"error": error}


def _fail(exc: BaseException, exit_code: int, as_json: bool, message: str) -> int:
    print(f"cotembed: {message}", file=sys.stderr)
    if as_json:
        sys.stdout.write(dumps(_error_payload(exc, exit_code)) + "\n")
    return exit_code


def _not_utf8(arg: str) -> str | None:
    """None for a UTF-8 argument, else the argument shown as its bytes."""
    try:
        arg.encode("utf-8")
        return None
    except UnicodeEncodeError:
        return repr(arg.encode("utf-8", "surrogateescape")) if all(not "\ud800" <= c < "\udc80" for c in arg) else ascii(arg)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(argv)
    for i, arg in enumerate(argv):  # undecodable bytes arrive as lone surrogates (PEP 383)
        if (shown := _not_utf8(arg)) is not None:
            message = f"argument {i + 1} is not valid UTF-8 text: {shown}"
            return _fail(InputError(message), 2, as_json, f"error: {message}")
    try:
        args = build_parser().parse_args(argv)
        WriteGuard.of(args).check_declared(args)  # before any work: no output may replace an input
        return int(args.func(args))
    except CotembedError as exc:
        return _fail(exc, exc.exit_code, as_json, f"error: {exc}")
    except KeyboardInterrupt as exc:
        return _fail(exc, 130, as_json, "interrupted")
    except Exception as exc:
        if os.environ.get("COTEMBED_DEBUG"):
            raise
        return _fail(exc, EXIT_FAILURE, as_json, f"error: {type(exc).__name__}: {exc} (set COTEMBED_DEBUG=1 for a traceback)")


if __name__ == "__main__":
    raise SystemExit(main())
