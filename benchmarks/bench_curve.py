"""The test-time-compute curve on the critters splits: accuracy as questions are added.

For k = 1..G groups, the CoT accuracy of every subset of k of the system's groups
(mean, ±1 std and min-max over subsets), against the class-name baseline, from
one encoding pass (``cotembed curve``). Writes the JSON and PNG of each split to
benchmarks/figures/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from cotembed.cli import main as cotembed

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "benchmarks" / "figures"
SPLITS = {
    "easy": ("examples/critters/system.yaml", ".cotembed-data/critters-easy"),
    "hard": ("examples/critters/system_paraphrased.yaml", ".cotembed-data/critters-hard"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="critters")
    parser.add_argument("--method", default="cot")
    parser.add_argument("--cache", default=str(ROOT / ".cotembed-cache" / "embeddings.sqlite"))
    args = parser.parse_args()
    missing = [d for _, d in SPLITS.values() if not (ROOT / d / ".complete").exists()]
    if missing:
        print(f"missing splits {', '.join(missing)}: run `make splits` first", file=sys.stderr)
        return 1
    Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name, (system, data) in SPLITS.items():
        output = f"benchmarks/figures/curve-{name}.json"
        argv = ["curve", system, data, "--model", args.model, "--method", args.method, "--output", output]
        print(f"### {name}: `cotembed {' '.join(argv)}`")
        print(flush=True)
        os.chdir(ROOT)
        code = cotembed([*argv, "--cache", args.cache, "-q"])
        failed += code != 0
        curve = json.loads((ROOT / output).read_text(encoding="utf-8"))
        gain = curve["points"][-1]["mean"] - curve["baseline"]["accuracy"]
        print(f"all {len(curve['points'])} groups vs baseline: {100 * gain:+.2f} points")
        print(flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
