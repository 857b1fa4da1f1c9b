"""cotembed optimize on critters hard: candidates per second, and what the search wins on a test split it never saw.

Speed: 1,000 cached critters images (hard, seed 4004; 800 steer the search, 200 are its
validation rows), the paraphrased system, the vocabulary with caption words; the search
runs to its candidate budget and we count the candidates it scored per second, with the
prompts the model had to embed for them (new wordings, batched per round). The same
search again (same seed, so the same candidates, every prompt now known) gives the
scoring-only rate.

Quality: the issue's setting. Start from ``examples/critters/system_paraphrased.yaml``,
optimise on a hard split with seed 3003 (560 images) with a validation split with seed
3005 (560), and report accuracy on the hard test split with seed 2002 (``make splits``),
which no decision ever saw. Two vocabularies (``examples/critters/make_vocabulary.py``):
without any caption word, and with the caption phrases (the words the model knows best).
Each runs with seeds 0, 1, 2; ablations use seed 0.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import _common  # noqa: F401  (offline hub)
from cotembed import EmbeddingSet, PromptBank, System, load_encoder
from cotembed.data import collect_samples
from cotembed.optimize import Objective, Search, SearchSettings, Vocabulary, proposer_names
from cotembed.reporting._plots import plot_trajectory
from cotembed.scoring._threads import single_blas_thread
from cotembed_critters.species import generate_split

ROOT = Path(__file__).resolve().parents[1]
SPECIES = ROOT / "examples/critters/species.yaml"
FIGURES = ROOT / "benchmarks" / "figures"
REWORDING = ("reword", "reword-refit", "reword-group")


def split(tmp: Path, name: str, seed: int, per_class: int = 20) -> Path:
    """The split under .cotembed-data when `make splits` made it, else an identical one generated here."""
    made = ROOT / ".cotembed-data" / name
    if (made / ".complete").exists():
        return made
    out = tmp / name
    generate_split(SPECIES, out, per_class, seed=seed, difficulty="hard", progress=False)
    return out


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:5.1f}%"


def speed(encoder: Any, start: System, vocabulary: Vocabulary, images: int, budget: int, tmp: Path) -> None:
    per_class = -(-images // len(start.class_names))
    folder = split(tmp, f"critters-hard-speed-{per_class}", 4004, per_class)
    data = EmbeddingSet.from_samples(collect_samples([folder])[:images], encoder)
    rows = np.arange(len(data))
    train, val = data.subset(rows[rows % 5 != 0]), data.subset(rows[rows % 5 == 0])
    bank = PromptBank(encoder)
    temperature = float(encoder.logit_scale or 100.0)
    settings = SearchSettings(seed=0, max_candidates=budget, max_rounds=10_000, patience=10_000)

    def run() -> tuple[Any, float, int]:
        objective = Objective(train, bank.embed, temperature, val=val)
        before = bank.n_encoded
        t0 = time.perf_counter()
        result = Search(objective, settings, vocabulary=vocabulary).run(start)
        return result, time.perf_counter() - t0, bank.n_encoded - before

    bank.embed(start.compile().prompts)  # the starting system's own prompts, as any evaluation of it would
    cold, cold_s, embedded = run()
    warm, warm_s, _ = run()
    with single_blas_thread() as limited:
        pass
    print(f"cached image embeddings        {len(data)} ({len(train)} steer the search, {len(val)} validation; model {encoder.model_key})")
    print(f"start system                   {start.name} Q={start.n_prompts} N={len(start.class_names)}, vocabulary {vocabulary.n_wordings} wordings")
    print(f"candidates scored              {cold.n_candidates} in {cold.rounds} rounds (stopped: {cold.stop_reason}), "
          f"every proposer: {', '.join(proposer_names(False))}")
    print(f"prompts embedded by the model  {embedded} (new wordings, one batch per round)")
    print(f"candidates per second          {cold.n_candidates / cold_s:,.0f} (whole search: proposing, embedding, scoring; target >= 100)")
    print(f"candidates per second, warm    {warm.n_candidates / warm_s:,.0f} (same search again, every prompt already embedded)")
    print(f"BLAS threads while scoring     {'1 (threadpoolctl)' if limited else 'library default (threadpoolctl not installed)'}")


def quality(encoder: Any, start: System, tmp: Path, seeds: list[int], figure: bool) -> None:
    paths = {"train": split(tmp, "critters-hard-train-3003", 3003), "val": split(tmp, "critters-hard-val-3005", 3005),
             "test": split(tmp, "critters-hard", 2002)}
    data = {name: EmbeddingSet.from_samples(collect_samples([path]), encoder) for name, path in paths.items()}
    bank = PromptBank(encoder)
    temperature = float(encoder.logit_scale or 100.0)
    objective = Objective(data["train"], bank.embed, temperature, val=data["val"])
    test = Objective(data["test"], bank.embed, temperature)
    captions = System.load(ROOT / "examples/critters/system.yaml")
    vocabularies = {
        "no caption words": Vocabulary.load(ROOT / "examples/critters/vocabulary_paraphrases.yaml", start),
        "caption words": Vocabulary.load(ROOT / "examples/critters/vocabulary.yaml", start),
    }
    base = test.score(start).train
    print(f"model {encoder.model_key} (temperature {temperature:.2f}); optimised on hard seed 3003 ({len(data['train'])} images), "
          f"validation hard seed 3005 ({len(data['val'])}), tested on hard seed 2002 ({len(data['test'])}, never seen by the search)")
    print(f"start: system_paraphrased.yaml, test {pct(base)}; reference: the hand-written caption-word system.yaml, test {pct(test.score(captions).train)}")
    print()
    header = f"{'vocabulary':<17} {'proposers':<22} {'seed':>4}  {'train':>6} {'val':>6} {'test':>6}  {'gain':>7}  {'cands':>5} {'secs':>5}  stopped"
    print(header)
    print("-" * len(header))
    runs: list[tuple[str, str, tuple[str, ...], Vocabulary | None, int]] = []
    for name, vocabulary in vocabularies.items():
        runs += [(name, "all offline", (), vocabulary, seed) for seed in seeds]
        runs += [(name, "rewording only", REWORDING, vocabulary, seeds[0])]
    runs += [("none", "reinduce only", ("reinduce",), None, seeds[0]),
             ("none", "all offline", (), None, seeds[0])]
    gains: dict[str, list[float]] = {}
    for vname, label, proposers, vocabulary, seed in runs:
        t0 = time.perf_counter()
        result = Search(objective, SearchSettings(seed=seed, proposers=proposers), vocabulary=vocabulary).run(start)
        seconds = time.perf_counter() - t0
        after = test.score(result.best).train
        if label == "all offline" and vname != "none":
            gains.setdefault(vname, []).append(after)
        b = result.best_score
        print(f"{vname:<17} {label:<22} {seed:>4}  {pct(b.train)} {pct(b.val)} {pct(after)}  {100 * (after - base):+6.1f}  "
              f"{result.n_candidates:>5} {seconds:>5.1f}  {result.stop_reason}")
        if figure and vname == "caption words" and label == "all offline" and seed == seeds[0]:
            FIGURES.mkdir(parents=True, exist_ok=True)
            plot_trajectory(result.history, FIGURES / "optimize-hard.png",
                            "critters hard: system_paraphrased.yaml, vocabulary with caption words (seed 0)")
            path = [r for r in result.best_path if r["type"] != "start"]
    print()
    for vname, values in gains.items():
        v = 100 * np.asarray(values)
        print(f"{vname}: test {v.mean():.1f}% mean over seeds {', '.join(map(str, seeds))} [{v.min():.1f}, {v.max():.1f}], "
              f"{v.mean() - 100 * base:+.1f} points over the start")
    if figure:
        print()
        print("path of the caption-word run, seed 0 (candidate: edit, train / validation accuracy):")
        for r in path:
            print(f"  #{r['index']:<5} {r['description'][:110]}  {pct(r['train_accuracy'])} / {pct(r['val_accuracy'])}")
    print()
    print("the same from the command line (seed 0, caption words; examples/critters/vocabulary_paraphrases.yaml for the other):")
    print("  cotembed critters generate --species examples/critters/species.yaml --per-class 20 --seed 3003 --difficulty hard "
          "--out /tmp/critters-hard-train")
    print("  cotembed critters generate --species examples/critters/species.yaml --per-class 20 --seed 3005 --difficulty hard "
          "--out /tmp/critters-hard-val")
    print("  cotembed optimize examples/critters/system_paraphrased.yaml /tmp/critters-hard-train --val /tmp/critters-hard-val "
          "--eval .cotembed-data/critters-hard --model critters --vocabulary examples/critters/vocabulary.yaml --out best.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="cached images for the speed figure")
    parser.add_argument("--candidates", type=int, default=2000, help="candidate budget of the speed run")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--no-figure", action="store_true")
    args = parser.parse_args()
    encoder = load_encoder("critters")
    start = System.load(ROOT / "examples/critters/system_paraphrased.yaml")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        print("speed")
        speed(encoder, start, Vocabulary.load(ROOT / "examples/critters/vocabulary.yaml", start), args.images, args.candidates, tmp)
        print()
        print("critters hard, test split never seen")
        quality(encoder, start, tmp, [int(s) for s in args.seeds.split(",")], not args.no_figure)
    encoder.close()


if __name__ == "__main__":
    main()
