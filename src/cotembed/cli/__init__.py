"""The ``cotembed`` command line; see :mod:`cotembed.cli._main`."""

from cotembed.cli._main import build_parser, main

__all__ = ["build_parser", "main"]
