"""The ``cotembed`` command: builds the parser from the verb families and runs one verb.

Each family of verbs is one module with a ``register(subparsers)`` function; adding a
family is one entry in ``FAMILIES``. JSON goes to stdout, progress and logs to stderr.
Exit codes: 0 ok, else the failure's own ``exit_code`` from ``cotembed.errors`` (1 runtime
failure, including any input that could not be used; 2 bad input; 130 interrupted).
Under ``--format json`` a failure also prints ``{"error": {...}}`` on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Sequence

from cotembed import __version__
from cotembed.cli._common import Parser, WriteGuard, dumps
from cotembed.errors import CotembedError, InputError, exit_code_of

FAMILIES = (
    "cotembed.cli._validate",
    "cotembed.cli._classify",
    "cotembed.cli._eval",
    "cotembed.cli._explain",
    "cotembed.cli._models",
    "cotembed.cli._critters",
    "cotembed.cli._diagnose",
    "cotembed.cli._evidence",
    "cotembed.cli._authoring",
    "cotembed.cli._report",
    "cotembed.cli._optimize",
    "cotembed.cli._reproduce",
    "cotembed.cli._serve",
    "cotembed.cli._calibrate",
    "cotembed.cli._datasets",
    "cotembed.cli._embed",
    "cotembed.cli._studio",
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


def _check_utf8(argv: Sequence[str]) -> None:
    """Bytes that are not UTF-8 reach Python as lone surrogates, which no output can print: say so up front."""
    for position, arg in enumerate(argv, 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raw = arg.encode("utf-8", "surrogateescape")
            raise InputError(f"argument {position} ({raw!r}) is not valid UTF-8 text; rename the file or pass the text "
                             "in UTF-8") from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(argv)
    try:
        _check_utf8(argv)
        args = build_parser().parse_args(argv)
        WriteGuard.of(args).check_declared(args)  # before any work: no output may replace an input
        return int(args.func(args))
    except CotembedError as exc:
        return _fail(exc, exit_code_of(exc), as_json, f"error: {exc}")
    except KeyboardInterrupt as exc:
        return _fail(exc, exit_code_of(exc), as_json, "interrupted")
    except Exception as exc:
        if os.environ.get("COTEMBED_DEBUG"):
            raise
        return _fail(exc, exit_code_of(exc), as_json, f"error: {type(exc).__name__}: {exc} (set COTEMBED_DEBUG=1 for a traceback)")


if __name__ == "__main__":
    raise SystemExit(main())
