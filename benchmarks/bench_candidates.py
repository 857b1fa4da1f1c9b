"""Candidate systems per second on cached embeddings: the inner loop of every optimiser.

An optimiser, ``induce`` or ``inspect`` scores many systems that differ from the
last one by a single edit. With the input embeddings cached, a candidate costs a
prompt-bank lookup (only a never-seen prompt reaches the model), compiling the
system, and two matrix products. This script embeds N critters images once with
the bundled model, then scores candidate systems that each reword one option of
``examples/critters/system.yaml`` with a wording the model has never seen, and
prints candidates per second with the number of prompts that had to be embedded.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import _common  # noqa: F401  (offline hub)
from cotembed import EmbeddingSet, System, load_encoder
from cotembed._embeddings import PromptBank
from cotembed.data import collect_samples
from cotembed.evaluation._evaluate import evaluate
from cotembed.scoring import Scorer, ScoringConfig
from cotembed.scoring._threads import single_blas_thread
from cotembed_critters.species import generate_split

ROOT = Path(__file__).resolve().parents[1]


def candidates(base: System, count: int, rng: np.random.Generator) -> list[System]:
    """Each candidate rewords one option of ``base`` (a new text for the model)."""
    out = []
    for i in range(count):
        group = base.groups[int(rng.integers(len(base.groups)))]
        option = int(rng.integers(len(group.options)))
        out.append(base.replace_option(group.name, option, f"{group.options[option]} (variant {i})"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="cached image embeddings to score on")
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--prefetch", type=int, default=64, help="candidates whose new prompts are embedded in one model call")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    base = System.load(ROOT / "examples/critters/system.yaml")
    encoder = load_encoder("critters")
    n_species = len(base.class_names)
    per_class = -(-args.images // n_species)
    with tempfile.TemporaryDirectory() as tmp:
        generate_split(ROOT / "examples/critters/species.yaml", Path(tmp) / "split", per_class, seed=args.seed + 7, progress=False)
        samples = collect_samples([Path(tmp) / "split"])[: args.images]
        data = EmbeddingSet.from_samples(samples, encoder)
    config = ScoringConfig(temperature=float(encoder.logit_scale or 100.0))
    bank = PromptBank(encoder)
    base_scorer = Scorer.build(base, bank.embed, config, ("cot",))
    base_acc = evaluate(base_scorer, data).methods["cot"].acc1
    systems = candidates(base, args.candidates, np.random.default_rng(args.seed))
    encoded_before = bank.n_encoded

    t0 = time.perf_counter()
    best = base_acc
    for start in range(0, len(systems), args.prefetch):
        group = systems[start : start + args.prefetch]
        bank.embed([p for s in group for p in s.compile().prompts])  # one model call for the new wordings
        with single_blas_thread():  # small products: a second BLAS thread costs more than it saves
            for system in group:
                acc = evaluate(Scorer.build(system, bank.embed, config, ("cot",)), data).methods["cot"].acc1
                best = max(best, acc or 0.0)
    seconds = time.perf_counter() - t0
    embedded = bank.n_encoded - encoded_before

    t1 = time.perf_counter()
    with single_blas_thread() as limited:
        for system in systems:  # every prompt now in the bank: the pure scoring cost
            evaluate(Scorer.build(system, bank.embed, config, ("cot",)), data)
    warm_seconds = time.perf_counter() - t1

    print(f"cached image embeddings        {len(data)} (model {encoder.model_key})")
    print(f"base system                    {base.name} Q={base.n_prompts} N={len(base.class_names)} acc1={100 * (base_acc or 0):.2f}%")
    print(f"candidates scored              {len(systems)} (each rewords one option)")
    print(f"prompts embedded by the model  {embedded} (one per candidate: its new wording)")
    print(f"candidates per second          {len(systems) / seconds:,.0f} (new wordings embedded in batches of {args.prefetch}; target >= 200)")
    print(f"candidates per second, warm    {len(systems) / warm_seconds:,.0f} (every prompt already in the bank)")
    print(f"BLAS threads while scoring     {'1 (threadpoolctl)' if limited else 'library default'}")
    encoder.close()


if __name__ == "__main__":
    main()
