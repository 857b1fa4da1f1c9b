"""Real models on real data: the article's several-models table, and ONNX int8 vs PyTorch speed.

Builds the real-data tasks (``cotembed datasets build``: WordNet plant families, CLDR emoji
subgroups) and scores each hand-written system with three real text models: all-MiniLM-L6-v2
on PyTorch (``minilm``), its int8 ONNX export (``minilm-int8``) and paraphrase-MiniLM-L3-v2 as
ONNX (``minilm-l3``). Per task: one table, a row per model and a column per method (top-1),
the chance line, each question's accuracy; then "when does CoT help", worded from the figures.
Last, the speed of the int8 export against the PyTorch model on the same texts (batch 64,
2 threads each, interleaved repeats, median), their cosine, and how often their top-1 agrees.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

from cotembed._classifier import CoTClassifier
from cotembed.data import collect_samples, resolve_labels
from cotembed.encoders import load_encoder
from cotembed.evaluation._evaluate import EvalReport
from cotembed.reporting._comparison import comparison_table
from cotembed.system import System
from cotembed_experiments.datasets import build, get_task

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("plant-families", "emoji-subgroups")
MODELS = ("minilm", "minilm-int8", "minilm-l3")
METHODS = ("baseline", "cot", "hybrid", "ensemble", "dclip", "cot-log", "random-control")
THREADS = 2
BATCH = 64
SPEED_TARGET, AGREEMENT_TARGET, COSINE_TARGET = 1.5, 0.98, 0.99


def evaluate_task(task: str, data_dir: Path, cache: object) -> tuple[list[EvalReport], dict[str, CoTClassifier]]:
    system_path = f"examples/{task}/system.yaml"
    csv_path = data_dir / task / "data.csv"
    system = System.load(ROOT / system_path)
    samples, skipped = resolve_labels(collect_samples([csv_path]), system.resolve_label)
    reports, classifiers = [], {}
    for model in MODELS:
        encoder = load_encoder(model, lazy=True, info_store=cache)  # type: ignore[arg-type]
        clf = CoTClassifier(system, encoder, cache=cache, progress=False)  # type: ignore[arg-type]
        reports.append(clf.evaluate(samples, METHODS, skipped))
        classifiers[model] = clf
    rel = csv_path.relative_to(ROOT) if csv_path.is_relative_to(ROOT) else csv_path
    print(f"### {task} ({get_task(task).regime}): `cotembed eval {system_path} {rel} "
          + " ".join(f"--model {m}" for m in MODELS) + f" --methods {','.join(METHODS)}`")
    print()
    print(comparison_table(reports))
    print("random-control: the CoT aggregation with random option words, mean over 5 seeds. "
          "Question accuracy: how often a question's top answer is the one the true class's rule names.")
    print()
    return reports, classifiers


def acc(report: EvalReport, method: str) -> float:
    return float(report.methods[method].acc1 or 0.0)


def _short(model: str) -> str:
    return model.split("@")[0].removeprefix("onnx:").removeprefix("minilm:")


def _points(values: list[float], reports: list[EvalReport]) -> str:
    return ", ".join(f"{_short(r.model)} {v:+.1f}" for r, v in zip(reports, values))


def when_cot_helps(results: dict[str, list[EvalReport]]) -> None:
    """Sentences computed from the figures above, so they change when the figures do."""
    print("### When does CoT help")
    print()
    for task, reports in results.items():
        regime = get_task(task).regime
        gains = [100 * (acc(r, "cot") - acc(r, "baseline")) for r in reports]
        hybrid = [100 * (acc(r, "hybrid") - max(acc(r, "cot"), acc(r, "baseline"))) for r in reports]
        ensemble = [100 * (acc(r, "cot") - acc(r, "ensemble")) for r in reports]
        knowledge = [100 * (acc(r, "cot") - acc(r, "random-control")) for r in reports]
        verdict = "beats" if min(gains) > 0 else ("loses to or ties" if max(gains) <= 0 else "is mixed against")
        print(f"- **{task}** ({regime}): CoT {verdict} the class-name baseline "
              f"({sum(g > 0 for g in gains)} of {len(gains)} models ahead; CoT − baseline in points: {_points(gains, reports)}). "
              f"Against prompt ensembling of the names, CoT − ensemble: {_points(ensemble, reports)}. "
              f"Hybrid (names + questions) − the better of the two: {_points(hybrid, reports)}. "
              f"The rules' knowledge (CoT − random-control): {_points(knowledge, reports)}.")
        answered = {q: a for q, a in reports[0].question_accuracy.items() if a is not None}
        if answered:
            worst, best = min(answered, key=answered.__getitem__), max(answered, key=answered.__getitem__)
            print(f"  Questions are answered unevenly from these texts ({_short(reports[0].model)}): "
                  f"{best} {100 * answered[best]:.0f} % down to {worst} {100 * answered[worst]:.0f} %.")
    print()


def speed(texts: list[str], repeats: int) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """texts/s of both models on the same texts, interleaved; returns their embeddings too."""
    import torch

    torch.set_num_threads(THREADS)
    torch_model = load_encoder("minilm", device="cpu", batch_size=BATCH)
    onnx_model = load_encoder("minilm-int8", batch_size=BATCH, threads=THREADS)
    embeddings = {"minilm": torch_model.encode_texts(texts[:BATCH]), "minilm-int8": onnx_model.encode_texts(texts[:BATCH])}  # warm-up
    times: dict[str, list[float]] = {"minilm": [], "minilm-int8": []}
    for _ in range(repeats):
        for name, model in (("minilm", torch_model), ("minilm-int8", onnx_model)):
            start = time.perf_counter()
            embeddings[name] = model.encode_texts(texts)
            times[name].append(time.perf_counter() - start)
    torch_model.close()
    onnx_model.close()
    rates = {name: len(texts) / statistics.median(t) for name, t in times.items()}
    return rates, embeddings["minilm"], embeddings["minilm-int8"]


def agreement(results: dict[str, tuple[list[EvalReport], dict[str, CoTClassifier]]]) -> dict[str, dict[str, float]]:
    """Share of inputs where minilm-int8's top-1 equals minilm's, per task and method."""
    out: dict[str, dict[str, float]] = {}
    for task, (_, classifiers) in results.items():
        system = classifiers["minilm"].system
        samples, _ = resolve_labels(collect_samples([Path(os.environ["REALDATA_DIR"]) / task / "data.csv"]), system.resolve_label)
        texts = [s.text or "" for s in samples]
        out[task] = {}
        for method in ("baseline", "cot", "hybrid"):
            tops = [classifiers[m].scores_from_embeddings(classifiers[m].embed(texts=texts), method).argmax(axis=1)
                    for m in ("minilm", "minilm-int8")]
            out[task][method] = float((tops[0] == tops[1]).mean())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / ".cotembed-data" / "realdata"))
    parser.add_argument("--cache", default=str(ROOT / ".cotembed-cache" / "realdata.sqlite"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from cotembed.cache import open_cache

    data_dir = Path(args.data)
    os.environ["REALDATA_DIR"] = str(data_dir)
    for task in TASKS:
        built = build(task, data_dir)
        print(f"built `cotembed datasets build {task}`: {built.n_rows} rows, {built.n_classes} classes "
              f"(manifest: source versions and sha256 in {built.manifest_path.name})", file=sys.stderr)
    Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
    with open_cache(args.cache) as cache:
        results = {task: evaluate_task(task, data_dir, cache) for task in TASKS}
        when_cot_helps({task: reports for task, (reports, _) in results.items()})
        agree = agreement(results)
    texts = []
    for task in TASKS:
        system = System.load(ROOT / f"examples/{task}/system.yaml")
        samples, _ = resolve_labels(collect_samples([data_dir / task / "data.csv"]), system.resolve_label)
        texts += [s.text or "" for s in samples]
    rates, ref, int8 = speed(texts, args.repeats)
    cosine = (ref * int8).sum(axis=1)
    ratio = rates["minilm-int8"] / rates["minilm"]
    print(f"### ONNX int8 vs PyTorch: all-MiniLM-L6-v2 on the {len(texts)} texts above, batch {BATCH}, {THREADS} threads each")
    print()
    print("| model | texts/s | ratio |")
    print("|---|---:|---:|")
    print(f"| minilm (PyTorch, fp32) | {rates['minilm']:.0f} | 1.00x |")
    print(f"| minilm-int8 (ONNX Runtime, int8) | {rates['minilm-int8']:.0f} | {ratio:.2f}x |")
    print()
    print(f"median of {args.repeats} interleaved repeats. Cosine int8 vs PyTorch per text: mean {cosine.mean():.4f}, "
          f"min {cosine.min():.4f} (target >= {COSINE_TARGET}).")
    lines = [f"{task} {method} {100 * a:.1f} %" for task, methods in agree.items() for method, a in methods.items()]
    print(f"top-1 agreement int8 vs PyTorch: {'; '.join(lines)}.")
    low = min(a for methods in agree.values() for a in methods.values())
    met_speed, met_agree = ratio >= SPEED_TARGET, low >= AGREEMENT_TARGET
    print(f"criteria: >= {SPEED_TARGET}x faster: {'met' if met_speed else 'NOT met'} ({ratio:.2f}x); top-1 agreement >= "
          f"{100 * AGREEMENT_TARGET:.0f} %: {'met' if met_agree else 'NOT met'} (lowest {100 * low:.1f} %); cosine >= "
          f"{COSINE_TARGET}: {'met' if cosine.min() >= COSINE_TARGET else 'NOT met'} (min {cosine.min():.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
