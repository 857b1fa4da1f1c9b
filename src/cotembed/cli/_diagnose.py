"""Verbs that explain and repair a system: ``inspect`` (why it fails) and ``induce`` (fix it from examples).

Neither changes the model. ``inspect`` only reports; ``induce`` writes a new,
readable system YAML whose header says how it was made, and reports on held-out
data how the hand-written system and the induced one compare.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from cotembed.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    Resources,
    add_cache_options,
    add_embeddings_option,
    add_format,
    add_max_pixels,
    add_model_options,
    add_output,
    add_quiet,
    bounded_float,
    bounded_int,
    data_or_embeddings,
    emit,
    guarded_path,
    labelled_samples,
    load_system,
    non_negative_weight,
    positive_temperature,
    seed_int,
)
from cotembed.errors import InputError


# ------------------------------------------------------------------ shared
def _embedding_set(res: Resources, args: argparse.Namespace, system: Any, encoder: Any, samples: list[Any], skipped: list[Any], desc: str,
                   stored_dir: str | None = None) -> Any:
    from cotembed.cli._embed import labelled_embeddings

    return labelled_embeddings(args, res, system=system, encoder=encoder, samples=samples, skipped=skipped, desc=desc,
                               stored_dir=stored_dir)


# ----------------------------------------------------------------- inspect
def cmd_inspect(args: argparse.Namespace) -> int:
    from cotembed._classifier import resolve_temperature
    from cotembed._embeddings import PromptBank
    from cotembed.cli._embed import embeddings_model
    from cotembed.inspection import inspect_system
    from cotembed.reporting._diagnostics import inspection_table
    from cotembed.scoring import ScoringConfig, get_method

    system = load_system(args.system)
    if args.data and args.embeddings:
        raise InputError("give --data or --embeddings DIR, not both")
    if args.data and not args.model:
        raise InputError("inspect --data needs --model: the questions are answered by a model (e.g. --model critters)")
    get_method(args.method)
    samples: list[Any] = []
    skipped: list[Any] = []
    if args.data:
        samples, skipped = labelled_samples(args, system, args.data, "--data")
        if not samples:
            raise InputError(f"--data {', '.join(args.data)}: no labelled inputs of this system's classes")
    errors: list[Any] = []
    with Resources(args) as res:
        if args.model or args.embeddings:
            encoder = res.encoder(embeddings_model(args, res))
            bank = PromptBank(encoder, res.cache, progress=not args.quiet)
            config = ScoringConfig(resolve_temperature(args.temperature, system, encoder), args.hybrid_weight)
            data = (_embedding_set(res, args, system, encoder, samples, skipped, "inspect", args.embeddings)
                    if samples or args.embeddings else None)
            if data is not None:
                errors = data.errors
                if not len(data):
                    raise InputError("inspect: no input of --data could be used: " + "; ".join(f"{e.source}: {e.error}" for e in errors[:5]))
            result = inspect_system(system, embed=bank.embed, data=data, config=config, method=args.method,
                                    duplicate_threshold=args.duplicate_threshold, weak_skill=args.weak_skill,
                                    max_confusions=args.max_confusions)
        else:
            result = inspect_system(system)
    payload = {"path": args.system, **result.to_dict(), "errors": [e.to_dict() for e in errors]}
    emit(args, payload, lambda: inspection_table(payload))
    return EXIT_FAILURE if errors else EXIT_OK


# ------------------------------------------------------------------ induce
def _check_counts(counts: Counter[str], classes: Sequence[str], k: int, where: str) -> None:
    short = [(c, counts.get(c, 0)) for c in classes if counts.get(c, 0) < k]
    if short:
        listed = ", ".join(f"{c} ({n})" for c, n in short[:20]) + (" ..." if len(short) > 20 else "")
        raise InputError(f"{where}: --per-class {k} needs {k} labelled examples of every class; "
                         f"{len(short)} class(es) have fewer: {listed}")


def _accuracies(system: Any, embed: Any, config: Any, data: Any, methods: Sequence[str]) -> dict[str, float | None]:
    from cotembed.evaluation._evaluate import evaluate
    from cotembed.scoring import Scorer

    if data is None or not len(data):
        return {}
    report = evaluate(Scorer.build(system, embed, config, tuple(methods)), data, tuple(methods))
    return {m: report.methods[m].acc1 for m in methods}


def _header(args: argparse.Namespace, system: Any, summary: dict[str, Any], model: str, n_data: int,
            heldout: dict[str, Any], reference: float) -> list[str]:
    from cotembed.authoring.induce import describe_changes

    weights = ", ".join(f"{g} {w:g}" for g, w in summary["group_weights"].items())
    use = "--methods cot" if summary["method"] == "cot" else f"--methods hybrid --hybrid-weight {summary['hybrid_weight']:g}"
    lines = [
        f"Induced by `cotembed induce` from {args.system} [{system.fingerprint}]",
        f"data: {args.data_name} ({n_data} labelled inputs); {args.per_class} examples per class drawn with seed {args.seed}",
        f"model: {model}",
        f"rules: {summary['n_rule_changes']} of {summary['n_rule_entries']} class x group entries changed"
        + (f" (options within {summary['split_ratio']:g} of the top one's mean probability, at most {summary['max_options']})"
           if summary["split_ratio"] is not None else " (rules kept)"),
        f"temperature {summary['temperature']:g} (reference {reference:g}); group weights: {weights}"
        + (f"; dropped: {', '.join(summary['dropped_groups'])}" if summary["dropped_groups"] else ""),
        f"chosen by accuracy on the examples ({'cross-validated over ' + str(summary['cv_folds']) + ' folds' if summary['cv_folds'] else 'not cross-validated'}): "
        f"{100 * summary['selection_accuracy']:.1f}%",
        f"evaluate with: cotembed eval {args.out} DATA --model {args.model} {use}",
    ]
    if heldout.get("n_inputs"):
        before, after = heldout["before"], heldout["after"]
        lines.append(f"held-out ({heldout['n_inputs']} inputs, {heldout['source']}): before cot {_pct(before.get('cot'))}, "
                     f"hybrid {_pct(before.get('hybrid'))}; after {summary['method']} {_pct(after.get(summary['method']))}")
    if summary["rule_changes"]:
        lines += ["", "rule changes (class.group: before -> after):"] + [f"  {line}" for line in describe_changes(summary["rule_changes"])]
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def cmd_induce(args: argparse.Namespace) -> int:
    from cotembed._classifier import resolve_temperature
    from cotembed._embeddings import PromptBank
    from cotembed.authoring.induce import RuleInducer, draw_examples, write_system
    from cotembed.cli._embed import embeddings_model
    from cotembed.encoders import parse_spec
    from cotembed.reporting._diagnostics import induce_table
    from cotembed.scoring import ScoringConfig

    system = load_system(args.system)
    parse_spec(args.model)
    data_or_embeddings(args, "data", "DATA")
    out = Path(args.out)
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise InputError(f"--out {out}: write the induced system as .yaml or .yml (YAML keeps the header comment)")
    guarded_path(args, "--out", out, "out")
    classes = system.class_names
    args.data_name = args.embeddings or ", ".join(args.data)
    samples, skipped = ([], []) if args.embeddings else labelled_samples(args, system, args.data, "DATA")
    if not args.embeddings:
        _check_counts(Counter(s.label for s in samples), classes, args.per_class, args.data_name)
    eval_samples: list[Any] = []
    eval_skipped: list[Any] = []
    if args.eval:
        eval_samples, eval_skipped = labelled_samples(args, system, args.eval, "--eval")

    with Resources(args) as res:
        args.model = embeddings_model(args, res)
        encoder = res.encoder(args.model)
        data = _embedding_set(res, args, system, encoder, samples, skipped, "induce: examples", args.embeddings)
        _check_counts(Counter(data.labels), classes, args.per_class,
                      f"{args.data_name} after {len(data.errors)} input(s) failed" if data.errors else args.data_name)
        train_rows, rest_rows = draw_examples(data.labels, classes, args.per_class, args.seed)
        train = data.subset(train_rows)
        if args.eval:
            heldout = _embedding_set(res, args, system, encoder, eval_samples, eval_skipped, "induce: held-out")  # --eval: paths
            heldout_source = ", ".join(args.eval)
            errors = data.errors + heldout.errors
        else:
            heldout = data.subset(rest_rows) if rest_rows else None
            heldout_source = f"the rest of {args.data_name}"
            errors = data.errors
        bank = PromptBank(encoder, res.cache, progress=not args.quiet)
        reference = resolve_temperature(args.temperature, system, encoder)
        inducer = RuleInducer(system, bank.embed, temperature=reference, induce_rules=not args.no_rules,
                              calibrate=not args.no_calibrate, max_options=args.max_options, folds=args.folds)
        inducer.fit(train)
        summary = inducer.summary()
        before_config = ScoringConfig(reference, args.hybrid_weight)
        after_methods = tuple(dict.fromkeys(("cot", inducer.method_)))
        evaluation = {
            "train": {"n_inputs": len(train),
                      "before": _accuracies(system, bank.embed, before_config, train, ("cot", "hybrid")),
                      "after": _accuracies(inducer.system_, bank.embed, inducer.config_, train, after_methods)},
            "heldout": {"n_inputs": len(heldout) if heldout is not None else 0, "source": heldout_source,
                        "before": _accuracies(system, bank.embed, before_config, heldout, ("cot", "hybrid")),
                        "after": _accuracies(inducer.system_, bank.embed, inducer.config_, heldout, after_methods)},
        }
        model_key = encoder.model_key
    header = _header(args, system, summary, model_key, len(data), evaluation["heldout"], reference)
    write_system(inducer.system_, guarded_path(args, "--out", out, "out"), header)
    payload = {
        "system": {"path": args.system, "name": system.name, "hash": system.fingerprint},
        "out": {"path": str(out), "hash": inducer.system_.fingerprint},
        "model": model_key,
        "per_class": args.per_class,
        "seed": args.seed,
        "reference_temperature": reference,
        "before_hybrid_weight": args.hybrid_weight,
        "induced": summary,
        "evaluation": evaluation,
        "header": header,
        "errors": [e.to_dict() for e in errors],
    }
    if not evaluation["heldout"]["n_inputs"]:
        print("cotembed induce: no held-out inputs (every input was an example); pass --eval DATA to compare on held-out data",
              file=sys.stderr)
    emit(args, payload, lambda: induce_table(payload))
    return EXIT_FAILURE if errors else EXIT_OK


# ---------------------------------------------------------------- register
def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ignore-unknown", action="store_true", help="skip inputs whose label is not a class of the system")


def register(sub: Any) -> None:
    from cotembed.inspection import DUPLICATE_COSINE, WEAK_SKILL
    from cotembed.scoring import method_names

    p = sub.add_parser("inspect", help="why a system fails: what its rules cannot separate, and (with --model/--data) how the model answers it")
    p.add_argument("system", help="system file (.yaml or .json)")
    p.add_argument("--model", default=None, metavar="SPEC", help="model spec; adds near-duplicate options (and with --data, everything data-aware)")
    p.add_argument("--data", nargs="+", default=None, metavar="PATH", help="labelled ImageFolder directories or CSV/JSONL manifests")
    p.add_argument("--method", choices=method_names(), default="cot", help="method whose confusions are analysed (default: cot)")
    p.add_argument("--temperature", type=positive_temperature, default=None, help="softmax temperature (default: the system's, else the model's)")
    p.add_argument("--hybrid-weight", type=non_negative_weight, default=1.0, help="weight of the class-name term for --method hybrid (default: 1)")
    p.add_argument("--duplicate-threshold", type=bounded_float(-1.0, 1.0, low_inclusive=True), default=DUPLICATE_COSINE,
                   help=f"flag options of one group whose prompts have at least this cosine (default: {DUPLICATE_COSINE})")
    p.add_argument("--weak-skill", type=bounded_float(0.0, 1.0, low_inclusive=True), default=WEAK_SKILL,
                   help=f"flag questions whose (accuracy - chance) / (1 - chance) is below this (default: {WEAK_SKILL})")
    p.add_argument("--max-confusions", type=bounded_int(0, 1000), default=10, help="costliest confusions to analyse (default: 10)")
    p.add_argument("--batch-size", type=bounded_int(1, 4096), default=None, help="inputs per model call (default: the encoder's)")
    p.add_argument("--device", default=None, help="torch device for the model (default: cuda when available)")
    add_max_pixels(p)
    p.add_argument("--allow-outside-paths", action="store_true", help="let manifests name files outside their own folder")
    _add_data_options(p)
    add_embeddings_option(p)
    add_cache_options(p)
    add_quiet(p)
    add_format(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("induce", help="set rules, temperature and weights from K labelled examples per class; writes a new system")
    p.add_argument("system", help="starting system file (its groups and options are kept)")
    p.add_argument("data", nargs="*", help="labelled ImageFolder directories or CSV/JSONL manifests to draw the examples from "
                                         "(or --embeddings)")
    p.add_argument("--per-class", type=bounded_int(1, 100_000), required=True, metavar="K", help="examples per class to induce from")
    add_output(p, "--out", required=True, metavar="NEW.yaml", help="where to write the induced system (YAML with a header comment)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the draw of examples (default: 0)")
    p.add_argument("--eval", nargs="+", default=None, metavar="PATH", help="held-out labelled data for the before/after report "
                                                                            "(default: the inputs of DATA not drawn as examples)")
    p.add_argument("--no-rules", action="store_true", help="keep the system's rules; only calibrate temperature and weights")
    p.add_argument("--no-calibrate", action="store_true", help="keep temperature and weights; only induce rules (method cot)")
    p.add_argument("--max-options", type=bounded_int(1, 64), default=3, help="most options one rule may accept in one group (default: 3)")
    p.add_argument("--folds", type=bounded_int(0, 100), default=5, help="cross-validation folds for choosing settings (default: 5; 0: none)")
    add_model_options(p, method=False)
    _add_data_options(p)
    add_embeddings_option(p)
    add_format(p)
    p.set_defaults(func=cmd_induce)
