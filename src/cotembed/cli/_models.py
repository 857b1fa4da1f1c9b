"""``models``: the model backends and whether they are installed."""

from __future__ import annotations

import argparse
from typing import Any

from cotembed.cli._common import EXIT_OK, add_format, emit


def cmd_models(args: argparse.Namespace) -> int:
    from cotembed.encoders import available_models
    from cotembed.reporting._text import models_table

    models = available_models()
    emit(args, {"models": models}, lambda: models_table(models))
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="list model backends and whether they are installed")
    add_format(p)
    p.set_defaults(func=cmd_models)
