"""Rules induced from 5 examples per class vs the hand-written ones, on critters hard (and easy as a control).

The issue's setting: ``examples/critters/system_paraphrased.yaml`` on the ``hard`` test
split (seed 2002, 20 images per species, ``make splits``). Examples are drawn, K per
class, from a *different* hard split (seed 3003, 20 per species, generated here), so
the test images were never seen while inducing. Every draw (seed 0..D-1) gives one
figure; the table shows mean ± sample std over the draws, with min and max.

Variants on the same draws: the full inducer (rules + calibration, the defaults);
rules only (temperature and weights kept, method cot); calibration only (rules kept);
one option per rule; up to five options per rule. Then the full inducer for several K,
and the caption-word system on the easy split, where the hand-written rules are
already right, to show that inducing does not undo a good system.

Everything after the first encoding is numpy on cached embeddings: one encoding pass
per split, then each fit takes well under a second.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import _common  # noqa: F401  (offline hub)
from cotembed import EmbeddingSet, PromptBank, Scorer, ScoringConfig, System, evaluate, load_encoder
from cotembed.authoring.induce import RuleInducer, draw_examples
from cotembed.data import collect_samples
from cotembed_critters.species import generate_split

ROOT = Path(__file__).resolve().parents[1]
SPECIES = ROOT / "examples/critters/species.yaml"
VARIANTS: dict[str, dict[str, Any]] = {
    "rules + calibration (default)": {},
    "rules only (cot, T and weights kept)": {"calibrate": False},
    "calibration only (rules kept)": {"induce_rules": False},
    "one option per rule": {"max_options": 1},
    "up to 5 options per rule": {"max_options": 5},
}


def split(tmp: Path, name: str, seed: int, difficulty: str, per_class: int = 20) -> Path:
    """The split under .cotembed-data when `make splits` made it, else an identical one generated here."""
    made = ROOT / ".cotembed-data" / name
    if (made / ".complete").exists():
        return made
    out = tmp / name
    generate_split(SPECIES, out, per_class, seed=seed, difficulty=difficulty, progress=False)
    return out


def spread(values: list[float]) -> str:
    v = 100 * np.asarray(values)
    std = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():5.1f} ± {std:4.1f}   [{v.min():5.1f}, {v.max():5.1f}]"


def accuracy(system: System, embed: Any, config: ScoringConfig, data: EmbeddingSet, method: str) -> float:
    report = evaluate(Scorer.build(system, embed, config, (method,)), data, (method,))
    return float(report.methods[method].acc1 or 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=5, help="K: examples per class to induce from")
    parser.add_argument("--draws", type=int, default=5, help="draws of the K examples (seeds 0..draws-1)")
    parser.add_argument("--curve", default="1,2,3,5,10", help="K values for the full inducer")
    args = parser.parse_args()

    encoder = load_encoder("critters")
    temperature = float(encoder.logit_scale or 100.0)
    bank = PromptBank(encoder)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        paths = {
            "hard-train": split(tmp, "critters-hard-train-3003", 3003, "hard"),
            "hard-test": split(tmp, "critters-hard", 2002, "hard"),
            "easy-train": split(tmp, "critters-easy-train-3004", 3004, "easy"),
            "easy-test": split(tmp, "critters-easy", 1001, "easy"),
        }
        data = {name: EmbeddingSet.from_samples(collect_samples([path]), encoder) for name, path in paths.items()}
    encode_seconds = time.perf_counter() - t0
    paraphrased = System.load(ROOT / "examples/critters/system_paraphrased.yaml")
    captions = System.load(ROOT / "examples/critters/system.yaml")
    classes = paraphrased.class_names
    config = ScoringConfig(temperature)
    train, test = data["hard-train"], data["hard-test"]
    print(f"model {encoder.model_key} (temperature {temperature:.2f}); examples from a hard split with seed 3003 "
          f"({len(train)} images), tested on the hard split with seed 2002 ({len(test)} images); "
          f"{args.draws} draws of K={args.per_class} per class (seeds 0..{args.draws - 1}); accuracy in %")
    print()
    before_cot = accuracy(paraphrased, bank.embed, config, test, "cot")
    before_hybrid = accuracy(paraphrased, bank.embed, config, test, "hybrid")
    print(f"hand-written system_paraphrased.yaml: cot {100 * before_cot:.1f}, hybrid {100 * before_hybrid:.1f}")
    print()

    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    chosen: list[str] = []
    fit_seconds: list[float] = []
    for seed in range(args.draws):
        rows, _ = draw_examples(train.labels, classes, args.per_class, seed)
        examples = train.subset(rows)
        for name, params in VARIANTS.items():
            t = time.perf_counter()
            inducer = RuleInducer(paraphrased, bank.embed, temperature=temperature, **params).fit(examples)
            if not params:
                fit_seconds.append(time.perf_counter() - t)
                chosen.append(f"  draw {seed}: {inducer.method_} at T {inducer.temperature_:.1f}, hybrid weight {inducer.hybrid_weight_:g}, "
                              f"rules: ratio {inducer.split_ratio_:g}, <= {inducer.max_options_} options, "
                              f"{len(inducer.rule_changes_)}/112 changed; weights "
                              + ", ".join(f"{g} {w:g}" for g, w in inducer.group_weights_.items()))
            results[name].append(inducer.score(test))
    width = max(len(n) for n in VARIANTS)
    print(f"{'variant (test accuracy over draws)':<{width}}   mean ±  std   [  min,   max]   gain over hand-written cot")
    for name, values in results.items():
        print(f"{name:<{width}}   {spread(values)}   {100 * (np.mean(values) - before_cot):+5.1f} points")
    print()
    print("what the default inducer chose:")
    print("\n".join(chosen))
    print(f"fit time: {np.mean(fit_seconds):.2f} s per draw (after one encoding pass of {encode_seconds:.0f} s for all four splits)")
    print()

    print("full inducer vs K (examples per class):")
    for k in (int(x) for x in args.curve.split(",")):
        values = []
        for seed in range(args.draws):
            rows, _ = draw_examples(train.labels, classes, k, seed)
            values.append(RuleInducer(paraphrased, bank.embed, temperature=temperature).fit(train.subset(rows)).score(test))
        print(f"  K={k:<3} {spread(values)}   {100 * (np.mean(values) - before_cot):+5.1f} points")
    print()

    easy_train, easy_test = data["easy-train"], data["easy-test"]
    easy_before = accuracy(captions, bank.embed, config, easy_test, "cot")
    easy_after = []
    for seed in range(args.draws):
        rows, _ = draw_examples(easy_train.labels, classes, args.per_class, seed)
        easy_after.append(RuleInducer(captions, bank.embed, temperature=temperature).fit(easy_train.subset(rows)).score(easy_test))
    print(f"control: system.yaml (caption words) on easy (seed 1001), examples from an easy split with seed 3004: "
          f"hand-written cot {100 * easy_before:.1f}; induced {spread(easy_after)}")
    print()
    print("one draw from the command line (draw 0; the printed held-out figures are this script's draw-0 figures):")
    print("  cotembed critters generate --species examples/critters/species.yaml --per-class 20 --seed 3003 --difficulty hard "
          "--out /tmp/critters-hard-train")
    print(f"  cotembed induce examples/critters/system_paraphrased.yaml /tmp/critters-hard-train --model critters "
          f"--per-class {args.per_class} --seed 0 --eval .cotembed-data/critters-hard --out induced.yaml")
    encoder.close()


if __name__ == "__main__":
    main()
