"""Accuracy vs labelled examples per class (shots), and label-free refinement on the test batch.

Tasks (support sets are always drawn from data the test split does not contain):
- critters hard, ``system.yaml`` and ``system_paraphrased.yaml`` (critters model): test on the
  hard split with seed 2002, support drawn from a hard split with seed 3003;
- creatures-text (MiniLM; invented species names, so the class names carry nothing): test on
  ``test.csv``, support from sightings generated with another seed (texts also in the test set
  are dropped: the leakage check);
- WordNet glosses (MiniLM; Debian ``wordnet-base``): noun glosses, the lexicographer file as the
  class (24 classes), a small hand-written one-question system; and the same with the class
  names hidden (codes), where only the system's question carries knowledge.

Lines: zero-shot (cot, hybrid), transductive refinement of each on the whole test batch (no
label read), and for K = 1, 2, 4, 8, 16 shots: prototype, gda, induce (RuleInducer), fused with
the cot prior and with the hybrid prior. Mean ± sample std over seeded draws of the support set.

The real-data tasks of ``cotembed datasets build`` (plant-families: unknown names; emoji-subgroups) get the
zero-shot and transductive lines only (whole data, no label read).

Defaults (GDA shrinkage, the refiner's anchor, sharpness and balance) are chosen on critters hard with system_paraphrased.yaml (the tuning task, marked *);
the sweep tables show how the same values fare on the other tasks against each task's best. At
one example per class the fusion weight is not tuned: it is the prior's error rate on the examples.
Embeddings go through the SQLite cache (``$COTEMBED_CACHE``): the model runs once per input.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import _common  # noqa: F401  (offline hub)
from cotembed import EmbeddingSet, PromptBank, Scorer, ScoringConfig, System, load_encoder
from cotembed._support import find_duplicates
from cotembed.authoring.induce import RuleInducer, draw_examples
from cotembed.cache import EmbeddingCache
from cotembed.data import collect_samples, text_samples
from cotembed.scoring._fewshot import (
    DEFAULT_SHRINKAGE,
    FusedClassifier,
    GaussianDiscriminant,
    PrototypeClassifier,
)
from cotembed.scoring._transductive import DEFAULT_ANCHOR, DEFAULT_BALANCE, DEFAULT_SHARPNESS, TransductiveRefiner
from cotembed_critters.species import generate_split

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".cotembed-data"
FIGURES = ROOT / "benchmarks" / "figures"
SPECIES = ROOT / "examples/critters/species.yaml"
WORDNET = Path("/usr/share/wordnet/data.noun")
ZERO_SHOT = ("cot", "hybrid")
TUNING = "critters-hard / paraphrased"

LEXNAMES = {
    "04": ("act", "an action or activity"), "05": ("animal", "an animal"), "06": ("artifact", "a man-made object"),
    "07": ("attribute", "a property or quality"), "08": ("body", "a part of the body"),
    "09": ("cognition", "knowledge or thinking"), "10": ("communication", "language, writing or communication"),
    "11": ("event", "an event or happening"), "12": ("feeling", "a feeling or emotion"),
    "13": ("food", "food or drink"), "14": ("group", "a group of people or things"),
    "15": ("location", "a place or region"), "17": ("object", "a natural object"), "18": ("person", "a person"),
    "19": ("phenomenon", "a natural phenomenon"), "20": ("plant", "a plant"),
    "21": ("possession", "money or property"), "22": ("process", "a natural process"),
    "23": ("quantity", "an amount or unit of measure"), "24": ("relation", "a relation between things"),
    "25": ("shape", "a shape"), "26": ("state", "a state or condition"),
    "27": ("substance", "a substance or material"), "28": ("time", "a time or period"),
}


@dataclass
class Task:
    name: str
    system: System
    support: EmbeddingSet
    test: EmbeddingSet
    embed: Callable[..., np.ndarray]
    temperature: float
    notes: list[str] = field(default_factory=list)

    def truth(self, data: EmbeddingSet) -> np.ndarray:
        return data.label_indices(self.system.class_names)


def critters_split(name: str, seed: int) -> Path:
    out = DATA / name
    if out.is_dir() and any(out.iterdir()):  # generate_split moves a split into place only once complete
        return out
    generate_split(SPECIES, out, 20, seed=seed, difficulty="hard", progress=False)
    return out


def critters_tasks(cache: EmbeddingCache) -> list[Task]:
    encoder = load_encoder("critters")
    bank = PromptBank(encoder, cache)
    t = float(encoder.logit_scale or 100.0)
    support = EmbeddingSet.from_samples(collect_samples([critters_split("critters-hard-train-3003", 3003)]), encoder, cache)
    test = EmbeddingSet.from_samples(collect_samples([critters_split("critters-hard", 2002)]), encoder, cache)
    out = []
    for label, file in (("captions", "system.yaml"), ("paraphrased", "system_paraphrased.yaml")):
        system = System.load(ROOT / "examples/critters" / file)
        out.append(Task(f"critters-hard / {label}", system, support, test, bank.embed, t))
    return out


def creatures_task(cache: EmbeddingCache, encoder: Any, per_class: int = 40) -> Task:
    spec = importlib.util.spec_from_file_location("make_dataset", ROOT / "examples/creatures-text/make_dataset.py")
    assert spec is not None and spec.loader is not None
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    test_samples = collect_samples([ROOT / "examples/creatures-text/test.csv"])
    rng = random.Random(7007)
    texts, labels = [], []
    for name, attrs in make.SPECIES.items():
        for text in make.sightings(rng, attrs, per_class):
            texts.append(text)
            labels.append(name)
    support_samples = text_samples(texts, labels)
    dupes = find_duplicates(support_samples, test_samples)
    dropped = {s for s, _ in dupes}
    support_samples = [s for s in support_samples if s.source not in dropped]
    bank = PromptBank(encoder, cache)
    system = System.load(ROOT / "examples/creatures-text/system.yaml")
    task = Task("creatures-text", system, EmbeddingSet.from_samples(support_samples, encoder, cache),
                EmbeddingSet.from_samples(test_samples, encoder, cache), bank.embed, float(system.temperature or 20.0))
    task.notes.append(f"creatures-text: {len(dupes)} generated support sightings equal a test sighting and were dropped "
                      f"(leakage check); {len(support_samples)} support sightings left")
    return task


def wordnet_glosses(per_class: int, seed: int = 0) -> tuple[list[str], list[str]]:
    by_class: dict[str, list[str]] = {code: [] for code in LEXNAMES}
    seen: set[str] = set()
    for line in WORDNET.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("  ") or "|" not in line:
            continue
        code = line.split(" ", 2)[1]
        if code not in by_class:
            continue
        gloss = line.split("|", 1)[1].split(";")[0].strip().strip('"').strip()
        if len(gloss.split()) < 3 or gloss in seen:
            continue
        seen.add(gloss)
        by_class[code].append(gloss)
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for code, glosses in by_class.items():
        for i in rng.choice(len(glosses), size=per_class, replace=False):
            texts.append(glosses[int(i)])
            labels.append(LEXNAMES[code][0])
    return texts, labels


def wordnet_system(hidden_names: bool) -> System:
    names = {code: (f"class {code}" if hidden_names else word) for code, (word, _) in LEXNAMES.items()}
    return System.from_dict({
        "name": "wordnet-lexnames" + (" (names hidden)" if hidden_names else ""),
        "temperature": 20,
        "groups": {"topic": {"prompt": "This is about {}.", "options": [d for _, d in LEXNAMES.values()]}},
        "rules": {names[code]: {"topic": i} for i, code in enumerate(LEXNAMES)},
    })


def wordnet_tasks(cache: EmbeddingCache, encoder: Any) -> list[Task]:
    if not WORDNET.exists():
        return []
    texts, labels = wordnet_glosses(50)
    rows = np.arange(len(texts)).reshape(len(LEXNAMES), 50)  # per class: 30 test, 20 support
    test_rows, support_rows = rows[:, :30].ravel(), rows[:, 30:].ravel()
    data = EmbeddingSet.from_samples(text_samples(texts, labels), encoder, cache)
    bank = PromptBank(encoder, cache)
    out = []
    for hidden in (False, True):
        system = wordnet_system(hidden)
        support, test = data.subset(support_rows), data.subset(test_rows)
        if hidden:
            code_of = {word: f"class {code}" for code, (word, _) in LEXNAMES.items()}
            support.labels = [code_of[str(lbl)] for lbl in support.labels]
            test.labels = [code_of[str(lbl)] for lbl in test.labels]
        out.append(Task("wordnet" + (" (names hidden)" if hidden else ""), system, support, test, bank.embed, 20.0))
    return out


REALDATA = {"plant-families": "unknown names", "emoji-subgroups": "well-known names"}


def realdata_tasks(cache: EmbeddingCache, encoder: Any) -> list[Task]:
    """The real-data tasks (``cotembed datasets build``), whole, for the transductive lines only (no support set)."""
    out = []
    for name in REALDATA:
        path = DATA / "realdata" / name / "data.csv"
        if not path.exists():
            from cotembed_experiments.datasets import build  # the same build as ``make realdata``

            build(name, DATA / "realdata")
        data = EmbeddingSet.from_samples(collect_samples([path]), encoder, cache)
        system = System.load(ROOT / "examples" / name / "system.yaml")
        out.append(Task(name, system, data, data, PromptBank(encoder, cache).embed, float(system.temperature or 20.0)))
    return out


def run_transductive_only(task: Task) -> dict[str, Any]:
    truth = task.truth(task.test)
    result: dict[str, Any] = {"task": task.name, "n_test": len(task.test), "zero_shot": {}, "transductive": {}}
    for m in ZERO_SHOT:
        p0 = zero_shot(task, task.test, m)[1]
        refiner = TransductiveRefiner().fit(task.test.embeddings, p0)
        result["zero_shot"][m] = 100 * acc(p0.argmax(1), truth)
        result["transductive"][m] = {"accuracy": 100 * acc(refiner.predict_proba().argmax(1), truth),
                                     "iterations": refiner.n_iter_}
    return result


# ------------------------------------------------------------------ measuring
def zero_shot(task: Task, data: EmbeddingSet, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(scores, probabilities) of a zero-shot method."""
    config = ScoringConfig(task.temperature)
    scorer = Scorer.build(task.system, task.embed, config, (method,))
    scores = scorer.scores(data.embeddings, method)
    return scores, scorer.probabilities(data.embeddings, method)


def acc(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(pred == truth))


def stats(values: list[float]) -> tuple[float, float]:
    v = 100 * np.asarray(values)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def run_task(task: Task, shots: list[int], draws: int) -> dict[str, Any]:
    truth = task.truth(task.test)
    support_truth = task.truth(task.support)
    classes = task.system.class_names
    zs = {m: zero_shot(task, task.test, m) for m in ZERO_SHOT}
    zs_support = {m: zero_shot(task, task.support, m)[1] for m in ZERO_SHOT}
    result: dict[str, Any] = {"task": task.name, "n_test": len(task.test), "n_classes": len(classes), "zero_shot": {},
                              "transductive": {}, "shots": {}}
    for m in ZERO_SHOT:
        result["zero_shot"][m] = 100 * acc(zs[m][1].argmax(1), truth)
        t0 = time.perf_counter()
        refiner = TransductiveRefiner().fit(task.test.embeddings, zs[m][1])
        result["transductive"][m] = {"accuracy": 100 * acc(refiner.predict_proba().argmax(1), truth),
                                     "iterations": refiner.n_iter_, "seconds": time.perf_counter() - t0}
    per_pool = {k: [] for k in shots}
    for k in shots:
        lines: dict[str, list[float]] = {n: [] for n in ("prototype", "gda", "induce", "fused-cot", "fused-hybrid")}
        weights: dict[str, list[float]] = {"fused-cot": [], "fused-hybrid": []}
        for seed in range(draws):
            rows, _ = draw_examples(task.support.labels, classes, k, seed)
            x, y = task.support.embeddings[rows], support_truth[rows]
            per_pool[k].append(rows)
            lines["prototype"].append(acc(PrototypeClassifier().fit(x, y, len(classes)).predict(task.test.embeddings), truth))
            lines["gda"].append(acc(GaussianDiscriminant().fit(x, y, len(classes)).predict(task.test.embeddings), truth))
            inducer = RuleInducer(task.system, task.embed, temperature=task.temperature).fit(task.support.subset(rows))
            lines["induce"].append(inducer.score(task.test))
            for m in ZERO_SHOT:
                fused = FusedClassifier().fit(x, y, zs_support[m][rows])
                lines[f"fused-{m}"].append(acc(fused.predict(task.test.embeddings, zs[m][1]), truth))
                weights[f"fused-{m}"].append(fused.weight_)
        result["shots"][k] = {n: stats(v) for n, v in lines.items()}
        result["shots"][k]["weights"] = {n: float(np.mean(w)) for n, w in weights.items()}
    result["_draws"] = per_pool
    return result


def sweep_shrinkage(task: Task, shots: list[int], draws: int, grid: list[float]) -> dict[float, float]:
    truth, support_truth, n = task.truth(task.test), task.truth(task.support), len(task.system.class_names)
    out = {}
    for a in grid:
        values = []
        for k in shots:
            for seed in range(draws):
                rows, _ = draw_examples(task.support.labels, task.system.class_names, k, seed)
                model = GaussianDiscriminant(a).fit(task.support.embeddings[rows], support_truth[rows], n)
                values.append(acc(model.predict(task.test.embeddings), truth))
        out[a] = 100 * float(np.mean(values))
    return out


def sweep_default_weight(task: Task, draws: int, grid: list[float | None]) -> dict[float | None, float]:
    """1-shot fusion for each fixed weight (None: the prior's error rate on the examples); mean over both priors."""
    truth, support_truth = task.truth(task.test), task.truth(task.support)
    zs = {m: zero_shot(task, task.test, m)[1] for m in ZERO_SHOT}
    zs_support = {m: zero_shot(task, task.support, m)[1] for m in ZERO_SHOT}
    out = {}
    for w in grid:
        values = []
        for seed in range(draws):
            rows, _ = draw_examples(task.support.labels, task.system.class_names, 1, seed)
            for m in ZERO_SHOT:
                fused = FusedClassifier(default_weight=w).fit(task.support.embeddings[rows], support_truth[rows], zs_support[m][rows])
                values.append(acc(fused.predict(task.test.embeddings, zs[m]), truth))
        out[w] = 100 * float(np.mean(values))
    return out


def sweep_transductive(task: Task, grid: list[tuple[float, float, float]]) -> dict[tuple[float, float, float], float]:
    """Mean gain (points) over cot and hybrid for each (anchor, sharpness, balance)."""
    truth = task.truth(task.test)
    zs = {m: zero_shot(task, task.test, m)[1] for m in ZERO_SHOT}
    out = {}
    for anchor, sharp, bal in grid:
        gains = []
        for m in ZERO_SHOT:
            refined = TransductiveRefiner(anchor=anchor, sharpness=sharp, balance=bal).fit(task.test.embeddings, zs[m])
            gains.append(acc(refined.predict_proba().argmax(1), truth) - acc(zs[m].argmax(1), truth))
        out[(anchor, sharp, bal)] = 100 * float(np.mean(gains))
    return out


def refine_speed(rows: int = 1000, classes: int = 100, dim: int = 512, repeats: int = 5) -> tuple[float, int]:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(classes, dim))
    x = (centres[rng.integers(classes, size=rows)] + 2.0 * rng.normal(size=(rows, dim))).astype(np.float32)
    logits = rng.normal(size=(rows, classes))
    p0 = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    times, iters = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = TransductiveRefiner().fit(x, p0)
        times.append(time.perf_counter() - t0)
        iters = r.n_iter_
    return min(times), iters


# ------------------------------------------------------------------ output
def figure(results: list[dict[str, Any]], shots: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.8), squeeze=False)
    for ax, res in zip(axes[0], results):
        for name, style in (("prototype", "o-"), ("gda", "s-"), ("induce", "^-"), ("fused-cot", "D-"), ("fused-hybrid", "v-")):
            means = [res["shots"][k][name][0] for k in shots]
            stds = [res["shots"][k][name][1] for k in shots]
            ax.errorbar(shots, means, yerr=stds, fmt=style, ms=4, capsize=2, label=name)
        colours = {"cot": "grey", "hybrid": "black"}
        for m in ZERO_SHOT:
            ax.axhline(res["zero_shot"][m], color=colours[m], ls="--", lw=1, label=f"{m} (zero-shot)")
            ax.axhline(res["transductive"][m]["accuracy"], color=colours[m], ls=":", lw=1.5, label=f"{m} + transductive")
        ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.set_title(res["task"], fontsize=9)
        ax.set_xlabel("examples per class")
        ax.set_ylim(0, 100)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][-1].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", default="1,2,4,8,16")
    parser.add_argument("--draws", type=int, default=5, help="seeded draws of the support set per K (seeds 0..draws-1)")
    parser.add_argument("--no-sweeps", action="store_true", help="skip the default-choosing sweeps")
    args = parser.parse_args()
    shots = [int(k) for k in args.shots.split(",")]
    DATA.mkdir(exist_ok=True)
    cache = EmbeddingCache()
    t0 = time.perf_counter()
    tasks = critters_tasks(cache)
    minilm = load_encoder("minilm")
    tasks.append(creatures_task(cache, minilm))
    wordnet = wordnet_tasks(cache, minilm)
    tasks += wordnet
    real = realdata_tasks(cache, minilm)
    prepare = time.perf_counter() - t0
    print(f"{len(tasks)} tasks, embeddings from the cache {cache.path.name} or computed once ({prepare:.0f} s); "
          f"K = {', '.join(map(str, shots))} examples per class, {args.draws} seeded draws each; accuracy in %, "
          "mean ± sample std over draws")
    if not wordnet:
        print(f"(WordNet tasks skipped: {WORDNET} not found; install Debian's wordnet-base)")
    for task in tasks:
        print(f"- {task.name}: {len(task.system.class_names)} classes, {len(task.test)} test inputs, "
              f"{len(task.support)} support inputs to draw from")
        for note in task.notes:
            print(f"  {note}")
    print()

    results = []
    for task in tasks:
        results.append(run_task(task, shots, args.draws))
    real_results = [run_transductive_only(task) for task in real]
    for res in results:
        print(f"### {res['task']}{' *' if res['task'] == TUNING else ''}")
        zs = "  ".join(f"{m} {res['zero_shot'][m]:.1f} -> +transductive {res['transductive'][m]['accuracy']:.1f} "
                       f"({res['transductive'][m]['accuracy'] - res['zero_shot'][m]:+.1f}, "
                       f"{res['transductive'][m]['iterations']} it)" for m in ZERO_SHOT)
        print(f"zero-shot: {zs}")
        names = ("prototype", "gda", "induce", "fused-cot", "fused-hybrid")
        print(f"{'K':>3}  " + "  ".join(f"{n:>13}" for n in names) + "   fused-cot - max(cot, gda)   fused-hybrid - max(hybrid, gda)   "
              "fused - gda (cot/hybrid)   weight (cot/hybrid)")
        for k in shots:
            row = res["shots"][k]
            cells = "  ".join(f"{row[n][0]:5.1f} ± {row[n][1]:4.1f}" for n in names)
            margins = [row[f"fused-{m}"][0] - max(res["zero_shot"][m], row["gda"][0]) for m in ZERO_SHOT]
            over_fs = [row[f"fused-{m}"][0] - row["gda"][0] for m in ZERO_SHOT]
            w = row["weights"]
            print(f"{k:>3}  {cells}   {margins[0]:+24.1f}   {margins[1]:+31.1f}   {over_fs[0]:+10.1f} / {over_fs[1]:+5.1f}   "
                  f"{w['fused-cot']:.2f} / {w['fused-hybrid']:.2f}")
        print()

    print("### targets")
    worst = min((res["shots"][k][f"fused-{m}"][0] - max(res["zero_shot"][m], res["shots"][k]["gda"][0]), res["task"], k, m)
                for res in results for k in shots for m in ZERO_SHOT)
    print(f"fused >= the better of its parts at every K (tolerance 0.5): worst margin {worst[0]:+.1f} points "
          f"({worst[1]}, K={worst[2]}, {worst[3]} prior) -> {'met' if worst[0] >= -0.5 else 'NOT met'}")
    non_critters = [r for r in results if not r["task"].startswith("critters")]
    if non_critters:
        best = max((r["shots"][shots[0]][f"fused-{m}"][0] - r["shots"][shots[0]]["gda"][0], r["task"], m)
                   for r in non_critters for m in ZERO_SHOT)
        print(f"fused over few-shot only (gda) at K={shots[0]} on a real task: best {best[0]:+.1f} points ({best[1]}, {best[2]} prior) "
              f"-> {'met' if best[0] >= 2 else 'NOT met'} (target +2)")
    unknown = [r for r in results if r["task"] in ("creatures-text", "wordnet (names hidden)")]
    for r in results:
        gains = {m: r["transductive"][m]["accuracy"] - r["zero_shot"][m] for m in ZERO_SHOT}
        kind = "unknown names, target >= +10" if r in unknown else "target >= -1"
        print(f"transductive on {r['task']}: " + ", ".join(f"{m} {g:+.1f}" for m, g in gains.items()) + f" ({kind})")
    for r in real_results:
        gains = {m: r["transductive"][m]["accuracy"] - r["zero_shot"][m] for m in ZERO_SHOT}
        target = "target >= +10" if REALDATA[r["task"]] == "unknown names" else "target >= -1"
        print(f"transductive on {r['task']} (real data, {REALDATA[r['task']]}, {r['n_test']} inputs): "
              + ", ".join(f"{m} {r['zero_shot'][m]:.1f} -> {r['transductive'][m]['accuracy']:.1f} ({g:+.1f}, "
                          f"{r['transductive'][m]['iterations']} it)" for m, g in gains.items()) + f" ({target})")
    speed, iters = refine_speed()
    print(f"refining 1,000 inputs x 100 classes (D=512): {speed * 1000:.0f} ms ({iters} iterations; target < 1 s)")
    print()

    sweeps: dict[str, Any] = {}
    if not args.no_sweeps:
        print("### defaults: chosen on the tuning task (*), checked on the others")
        shrink_grid = [0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
        print(f"GDA shrinkage (mean accuracy over K and draws); default {DEFAULT_SHRINKAGE}")
        print(f"{'task':<28}" + "".join(f"{a:>7}" for a in shrink_grid) + "   default - best")
        for task in tasks:
            s = sweep_shrinkage(task, shots, args.draws, shrink_grid)
            sweeps.setdefault("shrinkage", {})[task.name] = s
            print(f"{task.name + (' *' if task.name == TUNING else ''):<28}" + "".join(f"{v:7.1f}" for v in s.values())
                  + f"   {s[DEFAULT_SHRINKAGE] - max(s.values()):+.1f}")
        w_grid: list[float | None] = [0.0, 0.25, 0.5, 0.75, 1.0, None]
        print("fusion weight at K=1 (leave-one-out impossible; mean over cot and hybrid priors); default: the prior's "
              "error rate on the examples (column 'rule'), no tuning")
        print(f"{'task':<28}" + "".join(f"{'rule' if w is None else w:>7}" for w in w_grid) + "   rule - best fixed")
        for task in tasks:
            s = sweep_default_weight(task, args.draws, w_grid)
            sweeps.setdefault("default_weight", {})[task.name] = s
            print(f"{task.name + (' *' if task.name == TUNING else ''):<28}" + "".join(f"{v:7.1f}" for v in s.values())
                  + f"   {s[None] - max(v for w, v in s.items() if w is not None):+.1f}")
        grid = [(a, s, b) for a in (0.25, 0.5, 0.75) for s in (2.0, 4.0, 8.0) for b in (0.0, 0.5, 1.0)]
        default = (DEFAULT_ANCHOR, DEFAULT_SHARPNESS, DEFAULT_BALANCE)
        print(f"transductive (anchor, sharpness, balance): mean gain in points over cot and hybrid; default {default}")
        table = {task.name: sweep_transductive(task, grid) for task in tasks + real}
        sweeps["transductive"] = {name: {str(k): v for k, v in t.items()} for name, t in table.items()}
        print(f"{'task':<28}{'default':>9}{'best':>8}  best setting        worst setting")
        for name, t in table.items():
            best_key = max(t, key=lambda key: t[key])
            worst_key = min(t, key=lambda key: t[key])
            print(f"{name + (' *' if name == TUNING else ''):<28}{t[default]:+9.1f}{t[best_key]:+8.1f}  {str(best_key):<18}  "
                  f"{str(worst_key)} {t[worst_key]:+.1f}")
        print()

    FIGURES.mkdir(parents=True, exist_ok=True)
    figure(results, shots, FIGURES / "shots.png")
    for res in results:
        res.pop("_draws", None)
    payload = {"shots": shots, "draws": args.draws, "results": results, "realdata_transductive": real_results, "sweeps": sweeps,
               "defaults": {"shrinkage": DEFAULT_SHRINKAGE, "fusion_weight_at_1_shot": "prior's error rate", "anchor": DEFAULT_ANCHOR,
                            "sharpness": DEFAULT_SHARPNESS, "balance": DEFAULT_BALANCE}}
    (FIGURES / "shots.json").write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    print(f"figure: benchmarks/figures/shots.png, figures: benchmarks/figures/shots.json ({time.perf_counter() - t0:.0f} s in all)")
    cache.close()
    minilm.close()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
