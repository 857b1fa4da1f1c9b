"""``cotembed optimize``: search for a better system against held-out accuracy, the model frozen.

Embeds the training (and validation) inputs once, then scores thousands of edited
systems on the cached embeddings (see :mod:`cotembed.optimize`). Writes the best
system (validated, atomically, with a header saying how it was found), a JSON-lines
history of every candidate and a PNG of the trajectory. ``--engine dspy`` and
``--engine gepa`` run the same optimisation as a DSPy program or a GEPA run (the
``dspy`` extra) with an LLM proposing whole systems.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from cotembed.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    Resources,
    add_embeddings_option,
    add_format,
    add_model_options,
    add_output,
    bounded_float,
    bounded_int,
    data_or_embeddings,
    emit,
    guarded_path,
    labelled_samples,
    load_system,
    seed_int,
)
from cotembed.errors import InputError, MissingDependencyError

SYSTEM_SUFFIXES = (".yaml", ".yml", ".json")
ENGINES = ("search", "dspy", "gepa")


# ------------------------------------------------------------------ inputs
def _paths(args: argparse.Namespace) -> tuple[Path, Path, Path | None]:
    """--out, --history and --plot checked before any work, so a bad path costs no encoding."""
    out = Path(args.out)
    if out.suffix.lower() not in SYSTEM_SUFFIXES:
        raise InputError(f"--out {out}: a system file ends in {', '.join(SYSTEM_SUFFIXES)}")
    history = Path(args.history) if args.history else out.with_name(out.stem + ".history.jsonl")
    plot = None if args.no_plot else (Path(args.plot) if args.plot else out.with_name(out.stem + ".trajectory.png"))
    for flag, path in (("--out", out), ("--history", history), ("--plot", plot)):
        if path is None:
            continue
        guarded_path(args, flag, path, flag.lstrip("-"))
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise InputError(f"{flag} {path}: folder {folder} does not exist")
        if path.is_dir():
            raise InputError(f"{flag} {path}: is a folder")
        if path.exists() and not args.force:
            raise InputError(f"{flag} {path}: the file exists; pass --force to replace it")
    if history.suffix.lower() != ".jsonl":
        raise InputError(f"--history {history}: the history is JSON lines; name it .jsonl")
    if plot is not None and plot.suffix.lower() != ".png":
        raise InputError(f"--plot {plot}: the trajectory is a PNG; name it .png")
    return out, history, plot


def _logger(args: argparse.Namespace) -> Any:
    if args.quiet:
        return lambda _line: None
    return lambda line: print(f"cotembed optimize: {line}", file=sys.stderr, flush=True)


def _wants_llm(args: argparse.Namespace) -> bool:
    return bool(args.llm or args.llm_model or args.engine != "search" or
                (args.proposers and any(p.strip().startswith("llm-") for p in args.proposers.split(","))))


# --------------------------------------------------------------------- run
def cmd_optimize(args: argparse.Namespace) -> int:
    from cotembed._classifier import resolve_temperature
    from cotembed._embeddings import EmbeddingSet, PromptBank
    from cotembed.authoring.build import timestamp, write_system
    from cotembed.cli._embed import embeddings_model, labelled_embeddings
    from cotembed.encoders import parse_spec
    from cotembed.optimize import HistoryWriter, Objective, Search, SearchSettings, Vocabulary, parse_proposers, split_rows

    system = load_system(args.system)
    parse_spec(args.model)
    data_or_embeddings(args, "train", "TRAIN")
    out_path, history_path, plot_path = _paths(args)
    if args.engine != "search":
        if args.vocabulary or args.proposers:
            raise InputError(f"--vocabulary and --proposers belong to --engine search; --engine {args.engine} lets the LLM propose whole systems")
        for module in ("dspy", "gepa"):  # before any encoding: a missing extra costs nothing
            if importlib.util.find_spec(module) is None:
                raise MissingDependencyError(module, "dspy")
    wants_llm = _wants_llm(args)
    names = parse_proposers(args.proposers, wants_llm and args.engine == "search")
    vocabulary = Vocabulary.load(args.vocabulary, system) if args.vocabulary else Vocabulary()
    settings = SearchSettings(seed=args.seed, proposers=names, max_candidates=args.max_candidates, max_rounds=args.max_rounds,
                              max_seconds=args.max_seconds, patience=args.patience, per_round=args.per_round,
                              llm_requests=args.llm_requests, llm_every=args.llm_every)
    llm_settings = None
    if wants_llm:
        from cotembed.cli._authoring import llm_settings as resolve_llm

        llm_settings = resolve_llm(args)
    train_samples, train_skipped = ([], []) if args.embeddings else labelled_samples(args, system, args.train, "TRAIN")
    train_name = args.embeddings or ", ".join(args.train)
    val_samples, val_skipped = labelled_samples(args, system, args.val, "--val") if args.val else ([], [])
    eval_samples, eval_skipped = labelled_samples(args, system, args.eval, "--eval") if args.eval else ([], [])
    log = _logger(args)
    progress = not args.quiet

    with Resources(args) as res:
        args.model = embeddings_model(args, res)
        encoder = res.encoder(args.model)

        def embed_set(samples: list[Any], skipped: list[Any], desc: str) -> EmbeddingSet:
            return EmbeddingSet.from_samples(samples, encoder, res.cache, args.batch_size, progress, skipped, desc=desc,
                                             max_pixels=args.max_pixels)

        data = labelled_embeddings(args, res, system, encoder, train_samples, train_skipped, "optimize: train", args.embeddings)
        errors = list(data.errors)
        if args.val:
            val = embed_set(val_samples, val_skipped, "optimize: validation")
            errors += val.errors
            val_source = ", ".join(args.val)
            train = data
        elif args.val_fraction > 0:
            train_rows, val_rows = split_rows(data.labels, args.val_fraction, args.seed)
            train, val = data.subset(train_rows), data.subset(val_rows)
            val_source = f"{100 * args.val_fraction:g}% of TRAIN per class (seed {args.seed})"
        else:
            train, val, val_source = data, None, None
        if not len(train):
            raise InputError("optimize: no training input could be used: " + "; ".join(f"{e.source}: {e.error}" for e in errors[:5]))
        held_out = embed_set(eval_samples, eval_skipped, "optimize: eval") if args.eval else None
        if held_out is not None:
            errors += held_out.errors
        bank = PromptBank(encoder, res.cache, progress=progress)
        reference = resolve_temperature(args.temperature, system, encoder)
        objective = Objective(train, bank.embed, reference, val=val, method=args.method, hybrid_weight=args.hybrid_weight)
        encoded_before = bank.n_encoded
        writer = HistoryWriter(guarded_path(args, "--history", history_path, "history"))
        client = None
        try:
            if llm_settings is not None:
                from cotembed.authoring._llm import ChatClient

                def on_retry(attempt: int, delay: float, problem: str) -> None:
                    log(f"LLM attempt {attempt} failed ({problem}); retrying in {delay:.1f} s")

                client = ChatClient(llm_settings, on_retry=on_retry)
            start = system if args.temperature is None else system.with_temperature(args.temperature)  # the flag wins, and is kept
            if args.engine == "search":
                result = Search(objective, settings, vocabulary=vocabulary, llm=client, modality=args.modality, record=writer,
                                progress=progress, log=log).run(start)
            else:
                from cotembed.optimize.dspy_program import run_dspy, run_gepa

                runner = run_dspy if args.engine == "dspy" else run_gepa
                result = runner(start, objective, client, settings=settings, record=writer, log=log,
                                **({"optimizer": args.dspy_optimizer} if args.engine == "dspy" else {}))
        finally:
            writer.close()
            if client is not None:
                client.close()
        best = result.best
        test = None
        if held_out is not None and len(held_out):
            scorer = Objective(held_out, bank.embed, reference, method=args.method, hybrid_weight=args.hybrid_weight)
            test = {"source": ", ".join(args.eval), "n_inputs": len(held_out), "start": scorer.score(result.start).train,
                    "best": scorer.score(best).train}
        n_encoded = bank.n_encoded - encoded_before
        model_key = encoder.model_key

    summary = result.to_dict()
    header = _header(args, system, result, model_key, len(train), len(val) if val is not None else 0, val_source, test, timestamp())
    write_system(best, guarded_path(args, "--out", out_path, "out"), "".join(f"# {line}\n" for line in header))
    plot = None
    if plot_path is not None:
        from cotembed.reporting._plots import plot_trajectory

        title = f"{system.name or args.system} on {model_key}: {len(train)} train / {len(val) if val is not None else 0} validation inputs"
        plot = str(plot_trajectory(result.history, guarded_path(args, "--plot", plot_path, "plot"), title))
    payload = {
        "system": {"path": args.system, "name": system.name, "hash": system.fingerprint},
        "out": {"path": str(out_path), "hash": best.fingerprint, "written": True},
        "history": str(history_path),
        "plot": plot,
        "model": model_key,
        "engine": args.engine,
        "method": args.method,
        "reference_temperature": reference,
        "data": {"train": {"source": train_name, "n_inputs": len(train)},
                 "validation": {"source": val_source, "n_inputs": len(val) if val is not None else 0},
                 "eval": test},
        **summary,
        "prompts_embedded": n_encoded,
        "vocabulary": {"source": args.vocabulary, "n_wordings": result.vocabulary.n_wordings},
        "header": header,
        "errors": [e.to_dict() for e in errors],
    }
    emit(args, payload, lambda: _table(payload))
    if result.stop_reason == "interrupted":
        return 130
    return EXIT_FAILURE if errors else EXIT_OK


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _header(args: argparse.Namespace, system: Any, result: Any, model: str, n_train: int, n_val: int, val_source: str | None,
            test: dict[str, Any] | None, when: str) -> list[str]:
    s, b = result.start_score, result.best_score
    lines = [
        f"Optimised by `cotembed optimize --engine {args.engine}` from {args.system} [{system.fingerprint}] on {when}",
        f"model: {model}; method {args.method}; data: {args.embeddings or ', '.join(args.train)} ({n_train} training inputs); "
        f"validation: {val_source or 'none'} ({n_val} inputs)",
        f"seed {args.seed}; {result.n_candidates} candidates in {result.rounds} round(s), {result.seconds:.1f} s; "
        f"stopped: {result.stop_reason}; proposers: {', '.join(result.settings.get('proposers', []))}",
        f"accuracy: start train {_pct(s.train)}, validation {_pct(s.val)} -> best train {_pct(b.train)}, validation {_pct(b.val)}"
        + (f"; held out ({test['source']}): {_pct(test['start'])} -> {_pct(test['best'])}" if test else ""),
    ]
    steps = [r for r in result.best_path if r.get("type") != "start"]
    if steps:
        lines += ["edits from the start to this system (candidate number: edit):"]
        lines += [f"  #{r['index']} {r['description'][:300]}" for r in steps[:40]]
        if len(steps) > 40:
            lines.append(f"  ... and {len(steps) - 40} more (see the history)")
    else:
        lines.append("no candidate beat the starting system: this is the starting system")
    lines.append(f"evaluate with: cotembed eval {args.out} DATA --model {args.model}" + (f" --methods {args.method}" if args.method != "cot" else ""))
    return lines


def _table(payload: dict[str, Any]) -> str:
    from cotembed.reporting._text import table

    start, best = payload["start"], payload["best"]
    test = payload["data"]["eval"]
    rows = [("system", "train", "validation", "held out", "groups", "prompts", "hash"),
            ("start", _pct(start["train_accuracy"]), _pct(start["val_accuracy"]), _pct(test["start"]) if test else "-",
             str(start["n_groups"]), str(start["n_prompts"]), start["hash"]),
            ("best", _pct(best["train_accuracy"]), _pct(best["val_accuracy"]), _pct(test["best"]) if test else "-",
             str(best["n_groups"]), str(best["n_prompts"]), best["hash"])]
    rate = payload.get("candidates_per_second")
    lines = [
        f"{payload['n_candidates']} candidates in {payload['rounds']} round(s), {payload['seconds']:.1f} s"
        + (f" ({rate:g}/s)" if rate else "") + f", {payload['prompts_embedded']} prompt(s) embedded; stopped: {payload['stop_reason']}",
        "", table(rows), "",
    ]
    if payload["best_path"]:
        lines.append("path to the best system:")
        lines += [f"  #{p['index']:<5} {_pct(p['train_accuracy']):>6} {_pct(p['val_accuracy']):>6}  {p['edit'][:120]}" for p in payload["best_path"]]
    lines += ["", f"wrote {payload['out']['path']}, history {payload['history']}" + (f", plot {payload['plot']}" if payload["plot"] else "")]
    if payload["errors"]:
        lines.append(f"{len(payload['errors'])} input(s) failed (see --format json)")
    return "\n".join(lines)


# ---------------------------------------------------------------- register
def register(sub: Any) -> None:
    from cotembed.cli._authoring import add_llm_options
    from cotembed.optimize import PROPOSERS

    p = sub.add_parser(
        "optimize",
        help="search for a better system (rewordings, rules, weights, temperature) against held-out accuracy",
        description="Score many edited systems on cached embeddings of labelled data and keep the one with the best "
                    "validation accuracy. Writes the best system, a JSON-lines history of every candidate and a PNG of "
                    "the trajectory. Deterministic given --seed (apart from --max-seconds and LLM answers).",
    )
    p.add_argument("system", help="starting system file (.yaml or .json)")
    p.add_argument("train", nargs="*", metavar="TRAIN", help="labelled ImageFolder directories or CSV/JSONL manifests to optimise on "
                                                           "(or --embeddings)")
    add_output(p, "--out", required=True, metavar="BEST.yaml", help="where to write the best system (.yaml, .yml or .json)")
    data = p.add_argument_group("validation and held-out data")
    data.add_argument("--val", nargs="+", default=None, metavar="PATH", help="validation data: picks the best system, never steers the search")
    data.add_argument("--val-fraction", type=bounded_float(0.0, 0.9, low_inclusive=True), default=0.2, metavar="F",
                      help="without --val: hold out this share of each class of TRAIN (seeded by --seed; 0: no validation; default 0.2)")
    data.add_argument("--eval", nargs="+", default=None, metavar="PATH", help="held-out test data: reported for the start and the best system only")
    data.add_argument("--ignore-unknown", action="store_true", help="skip inputs whose label is not a class of the system")
    search = p.add_argument_group("search")
    search.add_argument("--vocabulary", metavar="FILE", help="candidate wordings: YAML mapping group -> option -> [wordings], or group -> [wordings]")
    search.add_argument("--proposers", metavar="LIST", default=None,
                        help=f"comma-separated, from: {', '.join(PROPOSERS)} (default: every offline one, plus the llm-* ones with an LLM)")
    search.add_argument("--seed", type=seed_int, default=0, help="seed of the search and of --val-fraction's split (default: 0)")
    search.add_argument("--max-candidates", type=bounded_int(1, 10_000_000), default=2000, metavar="N", help="candidate budget (default: 2000)")
    search.add_argument("--max-rounds", type=bounded_int(1, 1_000_000), default=200, metavar="N", help="round limit (default: 200)")
    search.add_argument("--max-seconds", type=bounded_float(0.0, 1e7), default=None, metavar="S", help="time limit (not reproducible)")
    search.add_argument("--patience", type=bounded_int(1, 10_000), default=8, metavar="N",
                        help="stop after this many rounds without a new best system (default: 8)")
    search.add_argument("--per-round", type=bounded_int(1, 100_000), default=96, metavar="N", help="candidates scored per round (default: 96)")
    search.add_argument("--engine", choices=ENGINES, default="search",
                        help="search: cotembed's loop; dspy: a DSPy program compiled with --dspy-optimizer; gepa: GEPA's "
                             "optimize_anything over the system text (dspy and gepa need an LLM and the dspy extra)")
    search.add_argument("--dspy-optimizer", choices=("gepa", "bootstrap", "none"), default="gepa",
                        help="DSPy optimiser compiling the reviser program (--engine dspy; default: gepa)")
    search.add_argument("--modality", choices=("image", "text"), default="image", help="what is classified, for LLM prompts (default: image)")
    out = p.add_argument_group("output")
    add_output(out, "--history", metavar="FILE.jsonl", help="every candidate, one JSON line each (default: OUT's name + .history.jsonl)")
    add_output(out, "--plot", metavar="FILE.png", help="trajectory figure (default: OUT's name + .trajectory.png)")
    out.add_argument("--no-plot", action="store_true", help="write no trajectory figure")
    out.add_argument("--force", action="store_true", help="replace --out, --history and --plot if they exist")
    llm = p.add_argument_group("LLM proposals")
    llm.add_argument("--llm", action="store_true", help="add the LLM proposers (model from --llm-model or $COTEMBED_LLM_MODEL)")
    llm.add_argument("--llm-requests", type=bounded_int(0, 10_000), default=10, metavar="N", help="most LLM requests in the run (default: 10)")
    llm.add_argument("--llm-every", type=bounded_int(1, 10_000), default=1, metavar="N", help="ask the LLM every N rounds (default: 1)")
    add_llm_options(p)
    add_model_options(p)
    add_embeddings_option(p)
    add_format(p)
    p.set_defaults(func=cmd_optimize)
