"""What every verb shares: the parser class, option types, output, and run resources.

Numeric flags are checked here (finite, in range) so no verb ever runs with a value
that would silently turn scores into NaN. Resources a verb opens (the cache, the
encoder) are closed by :class:`Resources` when the verb returns or fails.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Sequence

from cotembed.errors import InputError

EXIT_OK, EXIT_FAILURE = 0, 1  # bad input exits with InputError.exit_code (2)

MAX_TEMPERATURE = 1e4
MAX_HYBRID_WEIGHT = 1e4
MAX_PIXELS = 10**12
"""Upper bound of --max-pixels: far above any decodable image, low enough to stay a plain integer."""


class Parser(argparse.ArgumentParser):
    """Usage errors raise InputError (exit 2, JSON error under --format json) instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}")


# ----------------------------------------------------------------- option types
def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def bounded_float(low: float, high: float, low_inclusive: bool = False) -> Callable[[str], float]:
    """A finite float in (low, high] (or [low, high]); inf, nan and 1e39 are rejected."""

    def parse(text: str) -> float:
        value = _number(text)
        ok_low = value >= low if low_inclusive else value > low
        if not ok_low or value > high:
            bracket = "[" if low_inclusive else "("
            raise argparse.ArgumentTypeError(f"must be in {bracket}{low:g}, {high:g}], got {text}")
        return value

    return parse


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {text}")
        return value

    return parse


positive_temperature = bounded_float(0.0, MAX_TEMPERATURE)
non_negative_weight = bounded_float(0.0, MAX_HYBRID_WEIGHT, low_inclusive=True)
seed_int = bounded_int(0, 2**32 - 1)


def add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "json"), default="table", help="table for people, json for programs (stdout)")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def add_cache_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", default=None, metavar="PATH", help="embedding cache file (default: $COTEMBED_CACHE or ~/.cache/cotembed/embeddings.sqlite)")
    p.add_argument("--no-cache", action="store_true", help="encode everything, store nothing")
    p.add_argument("--cache-recover", action="store_true", help="if the cache file is corrupt, move it aside and start a new one")


def add_max_pixels(p: argparse.ArgumentParser) -> None:
    """--max-pixels: the decompression-bomb cap for one run, without touching the environment."""
    from cotembed.pipeline import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV

    p.add_argument("--max-pixels", type=bounded_int(1, MAX_PIXELS), default=None, metavar="N",
                   help=f"images above N pixels are reported as errors (checked from the file header) and the run goes "
                        f"on (default: ${MAX_PIXELS_ENV}, else {DEFAULT_MAX_PIXELS})")


def add_embeddings_option(p: argparse.ArgumentParser) -> None:
    """--embeddings DIR: score a Parquet dataset written by `cotembed embed` instead of DATA (no model run on inputs)."""
    p.add_argument("--embeddings", default=None, metavar="DIR",
                   help="use the embeddings stored in DIR (written by `cotembed embed`) instead of DATA; the model is "
                        "loaded only for prompts not cached, and a --model of another model is refused")


def data_or_embeddings(args: argparse.Namespace, field: str, name: str) -> None:
    """Exactly one of the DATA positionals and --embeddings."""
    given = bool(getattr(args, field, None))
    if given == bool(getattr(args, "embeddings", None)):
        raise InputError(f"give {name} or --embeddings DIR" if not given else f"give {name} or --embeddings DIR, not both")


def add_model_options(p: argparse.ArgumentParser, method: bool = True, several_models: bool = False) -> None:
    """--model, scoring and encoding options; the method choices come from the registry."""
    from cotembed.encoders import DEFAULT_MODEL
    from cotembed.scoring import method_names

    if several_models:
        p.add_argument("--model", action="append", default=None, metavar="SPEC",
                       help=f"model spec; repeat to compare models in one table (default: {DEFAULT_MODEL}; see `cotembed models`)")
    else:
        p.add_argument("--model", default=DEFAULT_MODEL, metavar="SPEC",
                       help=f"model spec, e.g. hf:openai/clip-vit-base-patch32 (default: {DEFAULT_MODEL}; see `cotembed models`)")
    if method:
        p.add_argument("--method", choices=method_names(), default="cot", help="scoring method (default: cot)")
    p.add_argument("--temperature", type=positive_temperature, default=None,
                   help=f"softmax temperature in (0, {MAX_TEMPERATURE:g}] (default: the system's, else the model's logit scale, else 100)")
    p.add_argument("--hybrid-weight", type=non_negative_weight, default=1.0,
                   help=f"weight of the class-name term in hybrid, in [0, {MAX_HYBRID_WEIGHT:g}] (default: 1)")
    p.add_argument("--batch-size", type=bounded_int(1, 4096), default=None, help="inputs per model call (default: the encoder's)")
    p.add_argument("--device", default=None, help="torch device for the model: cpu, cuda, cuda:1, mps (default: cuda when available)")
    add_max_pixels(p)
    p.add_argument("--allow-outside-paths", action="store_true", help="let manifests name files outside their own folder")
    p.add_argument("--fast-decode", action="store_true",
                   help="decode JPEGs at a reduced scale: faster for large photos, but pixels differ from the "
                        "model's reference preprocessing (same as COTEMBED_FAST_DECODE=1)")
    add_cache_options(p)
    add_quiet(p)


# ---------------------------------------------------------------------- output
def dumps(payload: Any) -> str:
    """Strict JSON: a NaN or infinity is a bug to surface, never output to emit."""
    return json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False)


def emit(args: argparse.Namespace, payload: dict[str, Any], table: Callable[[], str]) -> None:
    if args.format == "json":
        sys.stdout.write(dumps(payload) + "\n")
    else:
        sys.stdout.write(table() + "\n")


def write_rows(path: str | Path, rows: Sequence[dict[str, Any]], payload: dict[str, Any]) -> None:
    """``--output FILE``: .json writes the whole payload, .csv and .jsonl one row per record."""
    path = Path(path)
    suffix = path.suffix.lower()
    writers: dict[str, Callable[[], str]] = {
        ".json": lambda: dumps(payload) + "\n",
        ".jsonl": lambda: "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows),
        ".csv": lambda: _csv_text(rows),
    }
    if suffix not in writers:
        raise InputError(f"--output {path}: unknown format {suffix or '(none)'}; use .json, .csv or .jsonl")
    text = writers[suffix]()
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"--output {path}: cannot write ({exc.strerror or exc})") from exc


def _csv_text(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


# ------------------------------------------------------------------- resources
class Resources(ExitStack):
    """Opens the cache and lazily the model for one verb, and closes both at the end."""

    def __init__(self, args: argparse.Namespace):
        super().__init__()
        self.args = args
        self._cache: Any = None
        if getattr(args, "fast_decode", False):  # the pipeline reads it; restored when the verb ends
            from cotembed.pipeline import FAST_DECODE_ENV

            previous = os.environ.get(FAST_DECODE_ENV)
            os.environ[FAST_DECODE_ENV] = "1"
            self.callback(_restore_env, FAST_DECODE_ENV, previous)

    @property
    def cache(self) -> Any:
        from cotembed.cache import open_cache

        if self._cache is None:
            args = self.args
            self._cache = open_cache(args.cache, enabled=not args.no_cache, recover=getattr(args, "cache_recover", False))
            self.callback(self._cache.close)
        return self._cache

    def encoder(self, spec: str) -> Any:
        """The model as a lazy encoder: weights load only if something must be encoded."""
        from cotembed.encoders import load_encoder

        args = self.args
        if getattr(args, "quiet", False):  # also silence the model libraries' own loading bars
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        options: dict[str, Any] = {}
        if getattr(args, "batch_size", None):
            options["batch_size"] = args.batch_size
        if getattr(args, "device", None):
            options["device"] = args.device
        encoder = load_encoder(spec, lazy=True, info_store=self.cache, **options)
        self.callback(encoder.close)
        return encoder


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def labelled_samples(args: argparse.Namespace, system: Any, paths: Sequence[str], flag: str) -> tuple[list[Any], list[Any]]:
    """Samples of ``paths`` with labels mapped to the system's classes, and the skipped ones.

    Unlabelled data, or data with no input of the system's classes, is an input error naming the flag.
    """
    from cotembed.data import collect_samples, resolve_labels

    samples = collect_samples(paths, allow_outside=args.allow_outside_paths)
    unlabelled = [s.source for s in samples if s.label is None]
    if unlabelled:
        raise InputError(f"{flag} {', '.join(paths)}: {len(unlabelled)} input(s) have no label (e.g. {unlabelled[0]}); "
                         "give an ImageFolder (one sub-folder per class) or a manifest with a label column")
    kept, skipped = resolve_labels(samples, system.resolve_label, getattr(args, "ignore_unknown", False))
    if not kept:
        raise InputError(f"{flag} {', '.join(paths)}: no labelled inputs of this system's classes")
    return kept, skipped


def load_system(path: str) -> Any:
    from cotembed.system import System

    return System.load(path)
