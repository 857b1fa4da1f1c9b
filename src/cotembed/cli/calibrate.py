"""``calibrate``: fit a system's temperature (and group weights) so its CoT posterior means what it says.

The posterior is the product-of-groups likelihood (:mod:`cotembed.scoring.calibration`);
the fit minimises its NLL on labelled data and writes a new system whose
``temperature`` (and, where per-group weights lower the held-out NLL, ``weight``s)
are the fitted ones: reviewable fields that enter the fingerprint. The report gives
accuracy, ECE, NLL and Brier before and after, on the fitting data and on ``--eval``
data (held out: the figures to trust), plus today's sum-normalised CoT for reference.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cotembed.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    Resources,
    add_embeddings_option,
    add_format,
    add_model_options,
    add_output,
    data_or_embeddings,
    emit,
    labelled_samples,
    load_system,
    seed_int,
)
from cotembed.errors import InputError

PER_GROUP = {"auto": None, "yes": True, "no": False}


def _similarities(res: Resources, args: argparse.Namespace, encoder: Any, system: Any, paths: list[str], flag: str) -> Any:
    from cotembed.cli.embed import labelled_embeddings

    samples, skipped = ([], []) if flag == "--embeddings" else labelled_samples(args, system, paths, flag)
    data = labelled_embeddings(args, res, system, encoder, samples, skipped, f"calibrate: {flag}",
                               paths[0] if flag == "--embeddings" else None)
    if not len(data):
        raise InputError(f"{flag} {', '.join(paths)}: no input could be used: "
                         + "; ".join(f"{e.source}: {e.error}" for e in data.errors[:5]))
    return data


def _metrics(sims: Any, labels: Any, rules: Any, before_t: float, fit: Any, cot_scores: Any) -> dict[str, Any]:
    from cotembed.scoring.calibration import calibration_metrics, product_posterior
    from cotembed.scoring.functions import sum_normalize

    return {
        "cot (sum-normalised)": calibration_metrics(sum_normalize(cot_scores), labels),
        "product, before": calibration_metrics(product_posterior(sims, rules, before_t), labels),
        "product, calibrated": calibration_metrics(product_posterior(sims, rules, fit.temperature, fit.weights), labels),
    }


def cmd_calibrate(args: argparse.Namespace) -> int:
    from cotembed.authoring.induce import write_system
    from cotembed.classifier import resolve_temperature
    from cotembed.cli.embed import embeddings_model
    from cotembed.embeddings import PromptBank
    from cotembed.reporting.calibration import calibration_table, plot_reliability
    from cotembed.scoring import Scorer, ScoringConfig
    from cotembed.scoring.calibration import GroupRules, fit_posterior, product_posterior, reliability
    from cotembed.scoring.methods import OPTIONS

    system = load_system(args.system)
    data_or_embeddings(args, "data", "DATA")
    fit_paths, fit_flag = ([args.embeddings], "--embeddings") if args.embeddings else (list(args.data), "DATA")
    out = Path(args.out)
    inputs = [Path(p).resolve() for p in (args.system, *fit_paths, *(args.eval or ()))]
    if out.resolve() in inputs or any(out.resolve().is_relative_to(p) for p in inputs if p.is_dir()):
        raise InputError(f"--out {out}: refusing to write over an input (the system or data); choose another file")
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise InputError(f"--out {out}: write the calibrated system as .yaml or .yml")
    with Resources(args) as res:
        encoder = res.encoder(embeddings_model(args, res))
        start_t = resolve_temperature(args.temperature, system, encoder)
        config = ScoringConfig(start_t)
        scorer = Scorer.build(system, PromptBank(encoder, res.cache, progress=not args.quiet).embed, config, ("cot",))
        rules = GroupRules.from_compiled(scorer.compiled)
        sets = {"fit": _similarities(res, args, encoder, system, fit_paths, fit_flag)}
        if args.eval:
            sets["eval"] = _similarities(res, args, encoder, system, args.eval, "--eval")
        arrays = {k: (scorer.batch(d.embeddings)[OPTIONS], d.label_indices(scorer.class_names), scorer.scores(d.embeddings))
                  for k, d in sets.items()}
        sims, labels, _ = arrays["fit"]
        fit = fit_posterior(sims, labels, rules, start_t, per_group=PER_GROUP[args.per_group], seed=args.seed)
        model_key = encoder.model_key
    calibrated = system.with_temperature(fit.temperature)
    if fit.per_group:
        calibrated = calibrated.with_group_weights(fit.group_weights(rules.group_names))
    evaluation = {k: {"n_inputs": len(sets[k]), "metrics": _metrics(s, y, rules, start_t, fit, c)}
                  for k, (s, y, c) in arrays.items()}
    header = [f"Calibrated by `cotembed calibrate` from {args.system} [{system.fingerprint}]",
              f"data: {', '.join(fit_paths)} ({len(sets['fit'])} labelled inputs); model: {model_key}",
              f"temperature {start_t:g} -> {fit.temperature:g} (NLL of the product posterior "
              f"{fit.nll_before:.4f} -> {fit.nll_after:.4f}); group weights "
              + ("fitted" if fit.per_group else "kept")]
    write_system(calibrated, out, header)
    payload = {
        "system": {"path": args.system, "hash": system.fingerprint},
        "out": {"path": str(out), "hash": calibrated.fingerprint},
        "model": model_key,
        "fit": {"temperature_before": start_t, "temperature": fit.temperature, "per_group": fit.per_group,
                "group_weights": fit.group_weights(rules.group_names), "nll_before": fit.nll_before,
                "nll_after": fit.nll_after, "notes": fit.notes},
        "evaluation": evaluation,
        "errors": [e.to_dict() for d in sets.values() for e in d.errors],
    }
    if args.plot:
        shown = arrays.get("eval", arrays["fit"])
        diagrams = {"before": reliability(product_posterior(shown[0], rules, start_t), shown[1]).to_dict(),
                    "calibrated": reliability(product_posterior(shown[0], rules, fit.temperature, fit.weights), shown[1]).to_dict()}
        payload["plot"] = str(plot_reliability(diagrams, args.plot, f"{system.name}: {'eval' if 'eval' in arrays else 'fit'} data"))
    emit(args, payload, lambda: calibration_table(payload))
    return EXIT_FAILURE if payload["errors"] else EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("calibrate", help="fit the system's temperature (and group weights) on labelled data so CoT's "
                                         "probabilities are calibrated; writes a new system")
    p.add_argument("system", help="system file (.yaml or .json)")
    p.add_argument("data", nargs="*", help="labelled ImageFolder directories or CSV/JSONL manifests to fit on (or --embeddings)")
    p.add_argument("--out", required=True, metavar="NEW.yaml", help="where to write the calibrated system (never an input)")
    p.add_argument("--eval", nargs="+", default=None, metavar="PATH", help="held-out labelled data for the before/after report")
    p.add_argument("--per-group", choices=tuple(PER_GROUP), default="auto",
                   help="fit per-group weights: auto (only if they lower the NLL on held-out folds; default), yes, no")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the folds that decide --per-group auto (default: 0)")
    add_output(p, "--plot", default=None, metavar="PNG", help="write the reliability diagram before/after as PNG")
    p.add_argument("--ignore-unknown", action="store_true", help="skip inputs whose label is not a class of the system")
    add_model_options(p, method=False)
    add_embeddings_option(p)
    add_format(p)
    p.set_defaults(func=cmd_calibrate)
