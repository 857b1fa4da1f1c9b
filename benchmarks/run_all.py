"""Write BENCHMARKS.md from the benchmark scripts' own output (``make benchmarks``).

Each entry runs one script in a fresh process, in this order, and pastes what it
printed under the exact command that produced it, with the machine and the date.
PNGs a script writes into ``benchmarks/figures/`` are shown under its section.
Nothing in BENCHMARKS.md is typed by hand: edit a script, then run this again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "benchmarks" / "figures"


@dataclass(frozen=True)
class Entry:
    title: str
    script: str
    args: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()
    """File names under benchmarks/figures/ the script writes, shown after its output."""
    about: str = ""


ENTRIES: list[Entry] = [
    Entry("Candidate systems per second on cached embeddings", "bench_candidates.py",
          about="The inner loop of inspect, induce and optimize: score a system that differs by one option."),
    Entry("Scoring vs the article's per-image loop", "bench_scoring.py", ("--loop-images", "500")),
    Entry("Speed side by side: transformers' pipeline, open_clip, CoT's cost, scoring vs its floor", "bench_speed.py",
          about="Each section measures cotembed and the alternative in one process, interleaved, and prints ratios. The "
                "open_clip section needs its own environment (torch 2.14.1); set COTEMBED_OPEN_CLIP_PYTHON to its python "
                "(see the script's docstring), otherwise it says so and is skipped."),
    Entry("Validating a large system", "bench_validate.py"),
    Entry("Peak memory vs image size and folder size", "bench_memory.py"),
    Entry("The method zoo on critters easy and hard", "bench_zoo.py",
          about="One encoding pass per split, every method scored on it; random-control is the article's aggregation "
                "with random option words (mean ± std over 5 seeds), so cot minus it is what the system's knowledge adds."),
    Entry("Test-time compute: accuracy as questions are added", "bench_curve.py",
          figures=("curve-easy.png", "curve-hard.png"),
          about="For k = 1..G groups: CoT accuracy over every subset of k groups (line: mean, bars: ±1 std, band: min-max), "
                "with the text prompts Q they cost (top axis) and the class-name baseline."),
    Entry("Induced rules from 5 examples per class vs hand-written ones (critters hard)", "bench_induce.py",
          about="cotembed induce: each class's options set from the model's own answers on K labelled examples, then "
                "temperature, group weights and the hybrid weight calibrated on them; tested on a split the examples "
                "were not drawn from."),
    Entry("Few-shot examples and label-free refinement: accuracy vs shots (critters hard, creatures-text, WordNet)",
          "bench_shots.py", figures=("shots.png",),
          about="prototype (class means), gda (shared shrunk covariance), induce (rules from the examples) and fused (the "
                "system's zero-shot posterior as a prior, its weight chosen by leave-one-out on the examples) for 1..16 "
                "examples per class drawn from a split the test never sees; zero-shot and transductive (EM of a Gaussian mixture "
                "with one shared covariance on the unlabelled test batch; also on the real-data tasks) as lines. Defaults "
                "chosen on the task marked *, checked on the others."),
    Entry("Adaptive questioning: accuracy vs questions asked (critters)", "bench_adaptive.py",
          about="adaptive asks, per input, the most informative question next under a product-of-questions posterior "
                "and stops when confident; compared with asking every question (cot, cot-log) on system.yaml and on "
                "system_redundant.yaml (every attribute in three wordings). By default its answer model is fitted on the "
                "classified batch without labels. The confidence was chosen on another species file "
                "(species_tuning.yaml, its own seeds); the species reported on played no part in it."),
    Entry("Optimising a system: candidates per second and the gain on an unseen split (critters hard)", "bench_optimize.py",
          figures=("optimize-hard.png",),
          about="cotembed optimize from system_paraphrased.yaml: offline proposers (re-induce, reword from a vocabulary, "
                "drop/merge groups, prune, reweight, temperature) scored on cached embeddings; training rows steer, a "
                "validation split with another seed picks the best, and the test split (seed 2002) only reports."),
    Entry("Probabilities people can act on: calibration, open set, conformal sets, multi-label (critters)",
          "bench_calibration.py", figures=("calibration-reliability.png", "calibration-coverage.png"),
          about="The product-of-groups posterior (cot-log's, normalised), label-free and after cotembed calibrate; rule "
                "support and its energy (log-sum-exp over classes) as absolute fit scores with 6 of 28 species unknown, "
                "with and without a \"none of these\" option per group; split conformal sets at alpha 0.1; "
                "independent scores for overlapping concept classes. Fits and choices use calibration splits with other "
                "seeds (easy 1101, hard 2202); the test splits (1001, 2002) only report."),
    Entry("The service under load: cotembed serve vs the CLI's batch throughput", "bench_serve.py",
          about="A real server on 127.0.0.1 (critters model and system, cold cache), with 1 and with 2 worker processes, one "
                "and eight images per request from 1, 8 and 32 concurrent clients: throughput, p50/p99 latency and CPU per "
                "request. The served/CLI ratio at 32 clients is measured interleaved (a CLI pass of "
                "CoTClassifier.classify_samples on the same images, the server's load, a CLI pass) over several rounds and "
                "reported as the median ratio. Clients, servers and CLI share this machine's cores; the client CPU column says "
                "how much of them the load generator itself took."),
    Entry("Real models on real data: several models in one table, ONNX int8 vs PyTorch", "bench_realdata.py",
          about="Tasks built by `cotembed datasets build` from Debian's WordNet 3.0 (plant species glosses -> Latin family, "
                "names a text model barely knows) and Unicode CLDR emoji names (-> everyday subgroup names it knows well), "
                "30 items per class; systems written by hand before any result was seen. Models: all-MiniLM-L6-v2 on "
                "PyTorch, its int8 ONNX export, paraphrase-MiniLM-L3-v2 as ONNX."),
    Entry("Beyond one process: Ray Data vs the in-process CLI, and re-scoring 1,000,000 stored embeddings", "bench_distributed.py",
          ("--images", "10000"),
          about="classify --engine ray (local cluster in a loopback-only network namespace) with 1 and 2 actors against the "
                "in-process CLI on generated critters images, no cache, wall time including start-up, and for Ray also without "
                "the start of its local cluster; then a Parquet dataset of 1,000,000 embeddings re-scored for the critters "
                "system in a process that never loads the model, in both vector layouts."),
    Entry("Studio: one option edit re-scored and the page updated", "bench_studio.py",
          about="cotembed studio on 1,000 cached inputs x 30 classes (synthetic, 5 questions of 8 options): each edit rewords "
                "one option (one new prompt embedded), re-runs evaluate, misclassified and inspect, and re-renders the page's "
                "fragments; measured in process, over HTTP on 127.0.0.1, and in headless Chromium from the edit to the next "
                "paint. Target: < 200 ms."),
]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def run(entry: Entry) -> tuple[str, float, int]:
    cmd = [sys.executable, str(ROOT / "benchmarks" / entry.script), *entry.args]
    path = os.pathsep.join(p for p in (str(ROOT / "src"), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=path, MPLBACKEND="Agg")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    output = proc.stdout.rstrip()
    if proc.returncode != 0:
        output += f"\n\n(exit code {proc.returncode})\n" + proc.stderr[-3000:]
    return output, seconds, proc.returncode


def existing_sections(path: Path) -> dict[str, str]:
    """``## title`` -> that section's text, from a BENCHMARKS.md written earlier."""
    if not path.exists():
        return {}
    sections: dict[str, str] = {}
    title = None
    in_output = False  # a script's output (a ``` block) may print "## " lines of its own
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_output = not in_output
        if line.startswith("## ") and not in_output:
            title = line[3:].strip()
            sections[title] = ""
        elif title is not None:
            sections[title] += line + "\n"
    return sections


def section(entry: Entry) -> tuple[list[str], bool]:
    """Run one entry; its markdown lines and whether it failed."""
    print(f"running {entry.script} ...", file=sys.stderr, flush=True)
    output, seconds, code = run(entry)
    command = " ".join(["python", f"benchmarks/{entry.script}", *entry.args])
    lines = [f"## {entry.title}", ""]
    if entry.about:
        lines += [entry.about, ""]
    lines += [f"`{command}` ({seconds:.0f} s)", "", "```", output, "```", ""]
    for name in entry.figures:
        if (FIGURES / name).exists():
            lines += [f"![{name}](benchmarks/figures/{name})", ""]
    return lines, code != 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="rerun only entries whose script name contains one of these words; "
                                                  "the other sections of the existing file are kept as they are")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    FIGURES.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    chosen = {e.script for e in ENTRIES if not args.only or any(w in e.script for w in args.only)}
    kept = existing_sections(out) if args.only else {}
    parts = [
        "# Benchmarks",
        "",
        "Generated by `make benchmarks` (`python benchmarks/run_all.py`): every figure below is the",
        "output of the command above it, measured on this machine. Do not edit by hand.",
        "",
        f"- machine: {machine()}",
        f"- date: {dt.date.today().isoformat()}" + (" (sections rerun with --only; the others are from earlier runs)" if args.only else ""),
        "",
    ]
    failed = 0
    for entry in ENTRIES:
        if entry.script in chosen:
            lines, bad = section(entry)
            parts += lines
            failed += bad
        elif entry.title in kept:
            parts += [f"## {entry.title}", kept[entry.title].rstrip("\n"), ""]
    out.write_text("\n".join(parts), encoding="utf-8")
    print(f"wrote {out} ({len(chosen)} benchmarks run, {failed} failed)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
