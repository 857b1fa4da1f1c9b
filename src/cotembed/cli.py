"""The ``cotembed`` command: parses arguments and delegates to the library.

JSON goes to stdout, progress and logs to stderr. Exit codes: 0 ok, 1 runtime
failure (including any input that could not be used), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from cotembed import __version__
from cotembed.errors import CotembedError, InputError

EXIT_OK, EXIT_FAILURE = 0, 1  # bad input exits with InputError.exit_code (2)


class _Parser(argparse.ArgumentParser):
    """Usage errors exit with 2 and a one-line hint, as argparse does, but via InputError."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}")


def _emit(args: argparse.Namespace, payload: dict[str, Any], table: Callable[[], str]) -> None:
    if args.format == "json":
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(table() + "\n")


def _load_system(args: argparse.Namespace):
    from cotembed.system import System

    return System.load(args.system)


def _classifier(args: argparse.Namespace, method: str, system):
    """Loads the model last, so bad files and flags fail before the slow part."""
    from cotembed.cache import open_cache
    from cotembed.classifier import CoTClassifier
    from cotembed.encoders import load_encoder

    if args.quiet:  # also silence the model libraries' own loading bars
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    encoder = load_encoder(args.model, **({"batch_size": args.batch_size} if args.batch_size else {}))
    cache = open_cache(args.cache, enabled=not args.no_cache)
    return CoTClassifier(
        system,
        encoder,
        method=method,  # type: ignore[arg-type]
        temperature=args.temperature,
        hybrid_weight=args.hybrid_weight,
        cache=cache,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )


def _run_info(clf, method: str, system_path: str) -> dict[str, Any]:
    return {
        "system": {"name": clf.system.name, "path": system_path, "hash": clf.system.hash},
        "model": clf.encoder.model_key,
        "method": method,
        "temperature": clf.temperature,
        "hybrid_weight": clf.hybrid_weight,
    }


# ----------------------------------------------------------------------- verbs
def cmd_validate(args: argparse.Namespace) -> int:
    from cotembed.render import validate_table

    summary = {"path": args.system, **_load_system(args).summary()}
    _emit(args, {"valid": True, **summary}, lambda: validate_table(summary))
    return EXIT_OK


def cmd_classify(args: argparse.Namespace) -> int:
    from cotembed.data import collect_samples, text_samples
    from cotembed.render import predictions_table

    system = _load_system(args)
    samples = text_samples(args.inputs) if args.text else collect_samples(args.inputs)
    clf = _classifier(args, args.method, system)
    predictions, errors = clf.classify_samples(samples, top_k=args.top_k)
    payload = {**_run_info(clf, args.method, args.system), "predictions": [p.to_dict() for p in predictions], "errors": [e.to_dict() for e in errors]}
    _emit(args, payload, lambda: predictions_table(predictions, errors))
    return EXIT_FAILURE if errors else EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from cotembed.data import collect_samples, resolve_labels
    from cotembed.evaluate import evaluate
    from cotembed.render import eval_table

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    system = _load_system(args)
    samples, skipped = resolve_labels(collect_samples(args.data), system.resolve_label, args.ignore_unknown)
    clf = _classifier(args, methods[0] if methods else "cot", system)
    report = evaluate(clf, samples, methods, skipped)  # type: ignore[arg-type]
    payload = report.to_dict()
    payload["system"]["path"] = args.system
    _emit(args, payload, lambda: eval_table(report))
    return EXIT_FAILURE if report.errors else EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from cotembed.render import explanation_table

    clf = _classifier(args, args.method, _load_system(args))
    explanation = clf.explain(args.input, top_k=args.top_k)
    _emit(args, explanation.to_dict(), lambda: explanation_table(explanation))
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from cotembed.encoders import available_models
    from cotembed.render import models_table

    models = available_models()
    _emit(args, {"models": models}, lambda: models_table(models))
    return EXIT_OK


def cmd_critters_generate(args: argparse.Namespace) -> int:
    from cotembed.critters.species import generate_split

    summary = generate_split(args.species, args.out, args.per_class, seed=args.seed, difficulty=args.difficulty, size=args.size, progress=not args.quiet)
    _emit(
        args,
        summary,
        lambda: (
            f"wrote {summary['n_images']} images ({summary['n_species']} species x {summary['per_class']}) to {summary['out']} "
            f"[{summary['difficulty']}, {summary['size']}px, seed {summary['seed']}] in {summary['seconds']:.1f}s"
        ),
    )
    return EXIT_OK


def cmd_critters_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from cotembed.critters.model import WEIGHTS_DIR
    from cotembed.critters.train import TrainConfig, train

    overrides = {k: getattr(args, k) for k in ("seed", "n_train", "epochs", "batch_size", "threads") if getattr(args, k) is not None}
    config = replace(TrainConfig(), **overrides)
    out = args.out or WEIGHTS_DIR
    record = train(config, out_dir=Path(out), log=lambda line: print(line, file=sys.stderr))
    summary = {k: record[k] for k in ("sha256", "size_bytes", "logit_scale", "train_seconds")} | {"out": str(out)}
    _emit(args, summary, lambda: f"trained critters image tower in {summary['train_seconds']:.0f}s: {out} "
                               f"({summary['size_bytes'] / 1e6:.2f} MB, sha256 {summary['sha256'][:12]})")
    return EXIT_OK


# ---------------------------------------------------------------------- parser
def _add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "json"), default="table", help="table for people, json for programs (stdout)")


def _add_model_options(p: argparse.ArgumentParser, method: bool = True) -> None:
    from cotembed.encoders import DEFAULT_MODEL

    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model spec, e.g. hf:openai/clip-vit-base-patch32 (default: {DEFAULT_MODEL}; see `cotembed models`)")
    if method:
        p.add_argument("--method", choices=("cot", "baseline", "hybrid"), default="cot", help="scoring method (default: cot)")
    p.add_argument("--temperature", type=_positive_float, default=None, help="softmax temperature (default: system's, else the model's logit scale, else 100)")
    p.add_argument("--hybrid-weight", type=_non_negative_float, default=1.0, help="weight of the class-name term in hybrid (default: 1)")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="inputs per model call (default: the encoder's)")
    p.add_argument("--cache", default=None, metavar="PATH", help="embedding cache file (default: $COTEMBED_CACHE or ~/.cache/cotembed/embeddings.sqlite)")
    p.add_argument("--no-cache", action="store_true", help="encode everything, store nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cotembed", description="Chain-of-thought classification with frozen embedding models.")
    parser.add_argument("--version", action="version", version=f"cotembed {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("validate", help="check a system file and summarise it")
    p.add_argument("system", help="system file (.yaml or .json)")
    _add_format(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("classify", help="predict classes for images or texts")
    p.add_argument("system")
    p.add_argument("inputs", nargs="+", help="image files, folders, or CSV/JSONL manifests (path,label or text,label)")
    p.add_argument("--text", action="store_true", help="the inputs are literal texts to classify, not paths")
    _add_model_options(p)
    p.add_argument("--top-k", type=_positive_int, default=3, help="classes to report per input (default: 3)")
    _add_format(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("eval", help="accuracy of baseline, CoT and hybrid on labelled data")
    p.add_argument("system")
    p.add_argument("data", nargs="+", help="ImageFolder directories or CSV/JSONL manifests with labels")
    _add_model_options(p, method=False)
    p.add_argument("--methods", default="baseline,cot,hybrid", help="comma-separated methods (default: baseline,cot,hybrid)")
    p.add_argument("--ignore-unknown", action="store_true", help="skip inputs whose label is not a class of the system")
    _add_format(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("explain", help="show each question's answers and the top classes for one input")
    p.add_argument("system")
    p.add_argument("input", help="an image path (or a text, for text models)")
    _add_model_options(p)
    p.add_argument("--top-k", type=_positive_int, default=5, help="classes to show (default: 5)")
    _add_format(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("models", help="list model backends and whether they are installed")
    _add_format(p)
    p.set_defaults(func=cmd_models)

    critters = sub.add_parser("critters", help="the procedural critters world: generate image splits, train its model")
    critters_sub = critters.add_subparsers(dest="critters_command", required=True, metavar="COMMAND", parser_class=_Parser)
    p = critters_sub.add_parser("generate", help="render an ImageFolder split (OUT/<Species>/<i>.png) from a species file")
    p.add_argument("--species", required=True, metavar="SPECIES.yaml", help="species file, e.g. examples/critters/species.yaml")
    p.add_argument("--per-class", type=_positive_int, required=True, metavar="N", help="images per species")
    p.add_argument("--seed", type=_non_negative_int, required=True, metavar="S", help="split seed; the same seed writes identical files")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist or be empty)")
    p.add_argument("--difficulty", choices=("easy", "hard"), default="easy", help="hard: smaller critters, clutter, occlusion, more noise (default: easy)")
    p.add_argument("--size", type=_positive_int, default=64, help="image side in pixels (default: 64)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_format(p)
    p.set_defaults(func=cmd_critters_generate)
    p = critters_sub.add_parser("train", help="train the critters image tower against the frozen MiniLM text tower (CPU)")
    p.add_argument("--out", default=None, metavar="DIR", help="where to write weights + config (default: the bundled weights folder)")
    p.add_argument("--seed", type=_non_negative_int, default=None, help="training seed (default: 0)")
    p.add_argument("--n-train", type=_positive_int, default=None, metavar="N", help="rendered training images (default: 20000)")
    p.add_argument("--epochs", type=_positive_int, default=None, help="passes over the training images (default: 12)")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="contrastive batch size (default: 128)")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads; fixed for reproducibility (default: 2)")
    _add_format(p)
    p.set_defaults(func=cmd_critters_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except CotembedError as exc:
        print(f"cotembed: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cotembed: interrupted (finished batches are cached)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last resort: one clear line, traceback on request
        if os.environ.get("COTEMBED_DEBUG"):
            raise
        print(f"cotembed: error: {type(exc).__name__}: {exc} (set COTEMBED_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
