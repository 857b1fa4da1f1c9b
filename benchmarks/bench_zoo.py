"""The method zoo on the critters splits: what the system's knowledge adds over ensembling.

Every method is scored from one encoding pass of each split (``cotembed eval
--methods ...``): the class-name baseline, CLIP prompt ensembling, classification
by description (dclip), the article's CoT, its product-of-experts form (cot-log),
hybrid, and random-control (the CoT aggregation with the option words replaced by
seeded random words; mean ± std over 5 seeds). ``cot`` minus ``random-control`` is
what the system's knowledge is worth; ``easy`` asks with the words the critters
model was trained on, ``hard`` with paraphrases it never saw.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from cotembed._classifier import CoTClassifier
from cotembed.data import collect_samples, resolve_labels
from cotembed.encoders import load_encoder
from cotembed.reporting._text import methods_table
from cotembed.system import System

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("baseline", "ensemble", "dclip", "cot", "cot-log", "hybrid", "random-control")
SPLITS = {
    "easy": ("examples/critters/system.yaml", ".cotembed-data/critters-easy"),
    "hard": ("examples/critters/system_paraphrased.yaml", ".cotembed-data/critters-hard"),
}
EASY_MARGIN = 0.65
"""Points by which cot must beat random-control on easy: the system's knowledge, not ensembling."""


def run_split(name: str, system_path: str, data_dir: str, model: str, cache_path: str) -> tuple[float, float]:
    from cotembed.cache import open_cache

    system = System.load(ROOT / system_path)
    samples, skipped = resolve_labels(collect_samples([ROOT / data_dir]), system.resolve_label)
    with open_cache(cache_path) as cache:
        encoder = load_encoder(model, lazy=True, info_store=cache)
        try:
            clf = CoTClassifier(system, encoder, cache=cache)
            report = clf.evaluate(samples, METHODS, skipped)
        finally:
            encoder.close()
    print(f"### {name}: `cotembed eval {system_path} {data_dir} --model {model} --methods {','.join(METHODS)}`")
    print()
    print(f"system {report.system['name']} [{report.system['hash']}], model {report.model}, "
          f"temperature {report.temperature:g}, {report.n_classes} classes, {report.n_inputs} inputs")
    print(methods_table(report))
    cot, rc = report.methods["cot"].acc1 or 0.0, report.methods["random-control"].acc1 or 0.0
    print(f"cot - random-control: {100 * (cot - rc):+.2f} points")
    print()
    return cot, rc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="critters")
    parser.add_argument("--cache", default=str(ROOT / ".cotembed-cache" / "embeddings.sqlite"))
    args = parser.parse_args()
    missing = [d for _, d in SPLITS.values() if not (ROOT / d / ".complete").exists()]
    if missing:
        print(f"missing splits {', '.join(missing)}: run `make splits` first", file=sys.stderr)
        return 1
    Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
    results = {name: run_split(name, s, d, args.model, args.cache) for name, (s, d) in SPLITS.items()}
    cot, rc = results["easy"]
    verdict = "met" if cot - rc >= EASY_MARGIN else "NOT met"
    print(f"criterion: cot ahead of random-control by >= {100 * EASY_MARGIN:.0f} points on easy: {verdict} "
          f"({100 * (cot - rc):.2f} points)")
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    raise SystemExit(main())
