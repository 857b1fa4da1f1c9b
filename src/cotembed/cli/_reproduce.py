"""``cotembed reproduce pokemon``: the article's experiment in one command (needs network)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cotembed.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    Parser,
    Resources,
    add_format,
    add_model_options,
    add_output,
    bounded_float,
    bounded_int,
    emit,
    load_system,
    seed_int,
    write_rows,
)

DEFAULT_SYSTEM = "examples/pokemon/system.yaml"


def _art_box(text: str) -> Any:
    from cotembed.errors import InputError
    from cotembed_experiments.pokemon.crop import ArtBox

    try:
        return ArtBox.parse(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_pokemon(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cotembed._classifier import CoTClassifier
    from cotembed.errors import CotembedError, InputError
    from cotembed.http import RetryPolicy
    from cotembed.scoring import parse_methods
    from cotembed_experiments.pokemon.cards import cards_from_table, load_table
    from cotembed_experiments.pokemon.download import ImageDownloader
    from cotembed_experiments.pokemon.harness import DEFAULT_MODELS, compare_with_article, default_data_dir, draw_test_set
    from cotembed_experiments.pokemon.report import reproduction_table

    methods = parse_methods(args.methods)
    models = list(dict.fromkeys(args.model or DEFAULT_MODELS))
    if not Path(args.system).is_file():
        raise InputError(f"system file {args.system} not found; give the article's system with --system "
                         f"(it is {DEFAULT_SYSTEM} in a checkout of cotembed)")
    system = load_system(args.system)
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()
    if not args.quiet:
        print(f"loading {args.dataset} ...", file=sys.stderr)
    cards = cards_from_table(load_table(args.dataset, args.split, args.revision), source=args.dataset)
    policy = RetryPolicy(max_attempts=args.retries + 1, backoff_s=0.5, max_delay_s=10.0, max_total_s=max(60.0, 4 * args.timeout))
    with ImageDownloader(data_dir / "images", timeout_s=args.timeout, workers=args.workers, policy=policy) as downloader:
        test_set = draw_test_set(cards, system, data_dir, size=args.size, seed=args.seed, box=args.art_box,
                                 downloader=downloader, progress=not args.quiet,
                                 on_failure=None if args.quiet else lambda f: print(f"skipped {f.card.id}: {f.error}", file=sys.stderr))
    results, failed = [], []
    with Resources(args) as res:
        for spec in models:
            try:
                clf = CoTClassifier(system, res.encoder(spec), method=methods[0], temperature=args.temperature,
                                    hybrid_weight=args.hybrid_weight, cache=res.cache, batch_size=args.batch_size,
                                    progress=not args.quiet)
                report = clf.evaluate(test_set.samples, methods)
            except InputError:
                raise
            except CotembedError as exc:  # one model that cannot be loaded does not lose the others
                failed.append({"model": spec, "error": str(exc)})
                continue
            report.system["path"] = args.system
            results.append((spec, report))
    payload = {
        "dataset": args.dataset,
        "data_dir": str(data_dir),
        "system": {"name": system.name, "path": args.system, "hash": system.fingerprint},
        "test_set": test_set.to_dict(),
        "models": [{"spec": spec, **report.to_dict()} for spec, report in results],
        "comparison": compare_with_article(results),
        "failed_models": failed,
    }
    if args.output:
        write_rows(args, args.output, payload["comparison"], payload)
    emit(args, payload, lambda: reproduction_table(payload))
    input_errors = any(r.errors for _, r in results)
    return EXIT_FAILURE if failed or input_errors or not results else EXIT_OK


def register(sub: Any) -> None:
    from cotembed.scoring import method_names
    from cotembed_experiments.pokemon.cards import DATASET_ID, DATASET_SPLIT
    from cotembed_experiments.pokemon.crop import DEFAULT_ART_BOX
    from cotembed_experiments.pokemon.download import DEFAULT_TIMEOUT_S, DEFAULT_WORKERS
    from cotembed_experiments.pokemon.harness import DEFAULT_MODELS, DEFAULT_SEED, DEFAULT_SIZE

    p = sub.add_parser("reproduce", help="rerun an experiment of the article")
    experiments = p.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT", parser_class=Parser)
    q = experiments.add_parser(
        "pokemon", help="Pokémon card classification: baseline vs cot vs hybrid beside the article's figures",
        description="Loads the card dataset, downloads and crops the card images (cached in --data-dir), draws a seeded "
                    "test set of cards named after the system's classes and evaluates each model. Needs network access "
                    "for the dataset, the images and the models the first time.")
    q.add_argument("--system", default=DEFAULT_SYSTEM, help=f"the classification system (default: {DEFAULT_SYSTEM})")
    q.add_argument("--dataset", default=DATASET_ID,
                   help=f"hub dataset id, or a local .csv/.jsonl/.parquet with its columns (default: {DATASET_ID})")
    q.add_argument("--split", default=DATASET_SPLIT, help=f"dataset split (default: {DATASET_SPLIT})")
    q.add_argument("--revision", default=None, help="dataset revision (commit) to pin")
    q.add_argument("--data-dir", default=None, metavar="DIR",
                   help="where images and crops are kept (default: $COTEMBED_HOME/pokemon or ~/.cache/cotembed/pokemon)")
    q.add_argument("--size", type=bounded_int(1, 100_000), default=DEFAULT_SIZE, help=f"test images (default: {DEFAULT_SIZE}, as in the article)")
    q.add_argument("--seed", type=seed_int, default=DEFAULT_SEED, help=f"seed of the test set draw (default: {DEFAULT_SEED})")
    q.add_argument("--art-box", type=_art_box, default=DEFAULT_ART_BOX, metavar="L,T,R,B",
                   help=f"artwork window as fractions of the card (default: {DEFAULT_ART_BOX.text()})")
    q.add_argument("--workers", type=bounded_int(1, 64), default=DEFAULT_WORKERS, help=f"parallel downloads (default: {DEFAULT_WORKERS})")
    q.add_argument("--timeout", type=bounded_float(0.0, 3600.0), default=DEFAULT_TIMEOUT_S,
                   help=f"seconds to connect and per read (default: {DEFAULT_TIMEOUT_S:g})")
    q.add_argument("--retries", type=bounded_int(0, 20), default=3, help="retries of a failed download (default: 3)")
    add_model_options(q, method=False, several_models=True)
    for action in q._actions:  # same flag as eval's, with this verb's own default
        if action.dest == "model":
            action.help = f"model spec; repeat to compare models (default: {' and '.join(DEFAULT_MODELS)})"
    q.add_argument("--methods", default=None,
                   help=f"comma-separated methods, of {', '.join(method_names())} (default: baseline,cot,hybrid)")
    add_output(q, "--output", metavar="FILE", help="also write the results to FILE (.json: everything; .csv/.jsonl: the comparison rows)")
    add_format(q)
    q.set_defaults(func=cmd_pokemon)
