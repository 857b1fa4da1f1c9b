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
from pathlib import Path
from typing import Any, Callable, Sequence

from cotembed._io import atomic_write
from cotembed.errors import InputError
from cotembed.runs._options import CacheOptions, ModelOptions
from cotembed.runs._resources import RunResources

EXIT_OK, EXIT_FAILURE = 0, 1  # bad input exits with InputError.exit_code (2)

MAX_TEMPERATURE = 1e4
MAX_HYBRID_WEIGHT = 1e4
MAX_PIXELS = 10**12
"""Upper bound of --max-pixels: far above any decodable image, low enough to stay a plain integer."""


OUTPUT_DESTS = "output_dests"
"""Default set on each verb's parser: the destinations of the options that name what the verb writes."""
VERB_PARSER = "verb_parser"
"""Set on the parsed arguments: the parser of the verb that runs (the guard reads its options' names)."""


class Parser(argparse.ArgumentParser):
    """Usage errors raise InputError (exit 2, JSON error under --format json) instead of exiting.

    Abbreviated options are off: ``--method`` must never silently mean ``--methods``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        """``cotembed: error: eval: ...`` (main adds the first part), and where to read more."""
        verb = self.prog.removeprefix("cotembed").strip()
        raise InputError(f"{verb}: {message} (see `{self.prog} --help`)" if verb else f"{message} (see `cotembed --help`)")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, rest = super().parse_known_args(args, namespace)
        if getattr(parsed, VERB_PARSER, None) is None:  # the innermost parser (the verb's) runs first
            setattr(parsed, VERB_PARSER, self)
        return parsed, rest


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
    from cotembed._pipeline import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV

    p.add_argument("--max-pixels", type=bounded_int(1, MAX_PIXELS), default=None, metavar="N",
                   help=f"images above N pixels are reported as errors (checked from the file header) and the run goes "
                        f"on (default: ${MAX_PIXELS_ENV}, else {DEFAULT_MAX_PIXELS})")


class ModelDefault(str):
    """A ``--model`` value nobody typed: with ``--embeddings`` the dataset's own model is used instead."""


def add_embeddings_option(p: argparse.ArgumentParser) -> None:
    """--embeddings DIR: score a Parquet dataset written by `cotembed embed` instead of DATA (no model run on inputs).

    Call after the ``--model`` option: its default is marked, so a ``--model`` typed by the
    user (even the default's name) is checked against the dataset, and an untyped one is not.
    """
    p.add_argument("--embeddings", default=None, metavar="DIR",
                   help="use the embeddings stored in DIR (written by `cotembed embed`) instead of DATA; the model is "
                        "loaded only for prompts not cached, and a --model of another model is refused")
    default = p.get_default("model")
    if isinstance(default, str):
        p.set_defaults(model=ModelDefault(default))


def data_or_embeddings(args: argparse.Namespace, field: str, name: str) -> None:
    """Exactly one of the DATA positionals and --embeddings."""
    given = bool(getattr(args, field, None))
    if given == bool(getattr(args, "embeddings", None)):
        verb = getattr(args, "command", None) or "cotembed"
        what = f"give {name} or --embeddings DIR" + (", not both" if given else "")
        raise InputError(f"{verb}: {what} (see `cotembed {verb} --help`)")


def add_model_options(p: argparse.ArgumentParser, method: bool = True, several_models: bool = False) -> None:
    """--model, scoring and encoding options; the method choices come from the registry."""
    from cotembed.encoders import DEFAULT_MODEL, DEFAULT_MODEL_NOTE
    from cotembed.scoring import method_names

    if several_models:
        p.add_argument("--model", action="append", default=None, metavar="SPEC",
                       help=f"model spec; repeat to compare models in one table (default: {DEFAULT_MODEL}, {DEFAULT_MODEL_NOTE}; see `cotembed models`)")
    else:
        p.add_argument("--model", default=DEFAULT_MODEL, metavar="SPEC",
                       help=f"model spec, e.g. hf:openai/clip-vit-base-patch32 (default: {DEFAULT_MODEL}, {DEFAULT_MODEL_NOTE}; see `cotembed models`)")
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
def add_output(p: Any, *flags: str, replaces: Sequence[str] = (), **kwargs: Any) -> argparse.Action:
    """An option naming a file or folder the verb writes. Only such options may name a write, and
    :class:`WriteGuard` refuses one that would replace an input of the run. ``replaces``: the
    destinations of inputs this output may knowingly replace (``build --from X --out X``)."""
    action: argparse.Action = p.add_argument(*flags, **kwargs)
    declared = dict(p.get_default(OUTPUT_DESTS) or {})  # an argument group shares its parser's defaults
    declared[action.dest] = tuple(replaces)
    p.set_defaults(**{OUTPUT_DESTS: declared})
    return action


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _is_within(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


class WriteGuard:
    """The paths one run reads, so that no write replaces them (exit 2 instead).

    Inputs are found, not listed: every value of every option of the verb that is not a
    declared output and names an existing file or folder (``scheme:path`` model specs too),
    plus the embedding cache. A verb that gains a new input is guarded without a change here.
    """

    def __init__(self, inputs: Sequence[tuple[str, str, Path]], outputs: dict[str, tuple[str, ...]]):
        self.inputs = list(inputs)  # (destination, flag as typed, path)
        self.outputs = outputs

    @classmethod
    def of(cls, args: argparse.Namespace) -> "WriteGuard":
        outputs: dict[str, tuple[str, ...]] = dict(getattr(args, OUTPUT_DESTS, None) or {})
        labels = _option_labels(getattr(args, VERB_PARSER, None))
        inputs: list[tuple[str, str, Path]] = []
        for dest, value in vars(args).items():
            if dest in outputs or dest in (OUTPUT_DESTS, VERB_PARSER):
                continue
            for text in _strings(value):
                for candidate in (text, text.partition(":")[2]):
                    if candidate and os.path.lexists(candidate):
                        inputs.append((dest, labels.get(dest, dest), Path(candidate)))
        if hasattr(args, "cache") and not getattr(args, "no_cache", False) and not args.cache:
            from cotembed.cache import default_cache_path

            inputs.append(("cache", "the embedding cache", default_cache_path()))
        return cls(inputs, outputs)

    def check(self, flag: str, path: str | Path, dest: str | None = None) -> Path:
        """``path`` if writing it replaces no input of the run; else InputError (exit 2) naming both."""
        path = Path(path)
        allowed = self.outputs.get(dest or "", ())
        for input_dest, label, source in self.inputs:
            if input_dest in allowed:
                continue
            if _same_file(path, source):
                raise InputError(f"{flag} {path}: is {label} {source}, an input of this run; refusing to overwrite it "
                                 "(choose another output path)")
            if source.is_dir() and path.exists() and _is_within(path, source):
                raise InputError(f"{flag} {path}: is inside {label} {source}, an input of this run; refusing to replace "
                                 "a file of it (choose another output path)")
        return path

    def check_declared(self, args: argparse.Namespace) -> None:
        """Every declared output given on the command line (or by default), checked before any work."""
        labels = _option_labels(getattr(args, VERB_PARSER, None))
        for dest in self.outputs:
            value = getattr(args, dest, None)
            if isinstance(value, str) and value:
                self.check(labels.get(dest, dest), value, dest)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, str)]
    return []


def _option_labels(parser: Any) -> dict[str, str]:
    """Destination -> how the user typed it (``--calibrate``, ``DATA``), for messages."""
    labels: dict[str, str] = {}
    for action in getattr(parser, "_actions", ()):
        if action.option_strings:
            labels[action.dest] = max(action.option_strings, key=len)
        else:
            labels[action.dest] = str(action.metavar or action.dest).upper()
    return labels


def guarded_path(args: argparse.Namespace, flag: str, path: str | Path, dest: str | None = None) -> Path:
    """The one check every writer of the CLI makes just before writing ``path``."""
    return WriteGuard.of(args).check(flag, path, dest)


def dumps(payload: Any) -> str:
    """Strict JSON: a NaN or infinity is a bug to surface, never output to emit."""
    return json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False)


def emit(args: argparse.Namespace, payload: dict[str, Any], table: Callable[[], str]) -> None:
    """JSON as it is (strict, escaped by the encoder); a table with control and bidi characters
    shown as escapes, so no name in it can rewrite the terminal."""
    if args.format == "json":
        sys.stdout.write(dumps(payload) + "\n")
    else:
        from cotembed.reporting._text import terminal_text

        sys.stdout.write(terminal_text(table()) + "\n")


ROW_SUFFIXES = (".json", ".csv", ".jsonl")


def check_rows_path(flag: str, path: str | Path) -> Path:
    """An ``--output`` for :func:`write_rows`, checked before any work so a typo costs nothing."""
    path = Path(path)
    if path.suffix.lower() not in ROW_SUFFIXES:
        raise InputError(f"{flag} {path}: unknown format {path.suffix or '(none)'}; use .json, .csv or .jsonl")
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a folder; give a file name")
    return path


def write_rows(args: argparse.Namespace, path: str | Path, rows: Sequence[dict[str, Any]], payload: dict[str, Any],
               flag: str = "--output") -> None:
    """``--output FILE``: .json writes the whole payload, .csv and .jsonl one row per record."""
    path = guarded_path(args, flag, check_rows_path(flag, path), flag.lstrip("-").replace("-", "_"))
    writers: dict[str, Callable[[], str]] = {
        ".json": lambda: dumps(payload) + "\n",
        ".jsonl": lambda: "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows),
        ".csv": lambda: _csv_text(rows),
    }
    text = writers[path.suffix.lower()]()
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise InputError(f"{flag} {path}: cannot write ({exc.strerror or exc})") from exc


def _csv_text(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


# ------------------------------------------------------------------- resources
def model_options(args: argparse.Namespace) -> ModelOptions:
    """The model, cache and input options of a verb's flags (those it lacks at their defaults)."""
    from cotembed.encoders import DEFAULT_MODEL

    model = getattr(args, "model", None)
    return ModelOptions(
        spec=str(model) if isinstance(model, str) else DEFAULT_MODEL,  # eval's several --model: see its request
        temperature=getattr(args, "temperature", None),
        hybrid_weight=float(getattr(args, "hybrid_weight", 1.0)),
        batch_size=getattr(args, "batch_size", None),
        device=getattr(args, "device", None),
        max_pixels=getattr(args, "max_pixels", None),
        fast_decode=bool(getattr(args, "fast_decode", False)),
        allow_outside_paths=bool(getattr(args, "allow_outside_paths", False)),
        quiet=bool(getattr(args, "quiet", False)),
        cache=CacheOptions(getattr(args, "cache", None), enabled=not getattr(args, "no_cache", False),
                           recover=bool(getattr(args, "cache_recover", False))),
    )


class Resources(RunResources):
    """Opens the cache and lazily the model for one verb, and closes both at the end."""

    def __init__(self, args: argparse.Namespace):
        super().__init__(model_options(args))
        self.args = args


def labelled_samples(args: argparse.Namespace, system: Any, paths: Sequence[str], flag: str,
                     specs: Sequence[str] | None = None) -> tuple[list[Any], list[Any]]:
    """Samples of ``paths`` with labels mapped to the system's classes, and the skipped ones
    (see :func:`cotembed.runs._inputs.labelled_samples`; errors name ``flag``)."""
    from cotembed.runs._inputs import labelled_samples as labelled

    checked = [args.model] if specs is None and isinstance(args.model, str) else (specs or ())
    return labelled(system, paths, flag, checked, allow_outside=args.allow_outside_paths,
                    ignore_unknown=getattr(args, "ignore_unknown", False))


def load_system(path: str) -> Any:
    from cotembed.system import System

    return System.load(path)
