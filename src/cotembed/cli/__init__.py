"""The ``cotembed`` command line; see :mod:`cotembed.cli.main`."""

from cotembed.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
