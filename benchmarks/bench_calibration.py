"""Probabilities people can act on, on critters easy and hard: calibration, open set, conformal sets, multi-label.

Every fit uses a calibration split with another seed (easy 1101, hard 2202); the
figures are reported on the test splits (easy 1001, hard 2002), which fitted
nothing. Splits are generated here if missing. Embeddings go through the cache,
so every posterior below is scored from one encoding pass per split.

1. Calibration (ECE, 15 bins): today's ``cot`` output (sum-normalised scores); the
   product-of-groups posterior at the model's temperature (the label-free default);
   the same with its temperature fitted on the test batch's own group agreement
   (no labels); after ``cotembed calibrate`` on the calibration split. Targets: ECE
   <= 0.05 easy / <= 0.10 hard after calibrate, <= 0.15 label-free.
2. Open set: 6 of the 28 species held out of the system (5 seeds); known inputs
   must out-score the held-out species' inputs. Rule support (the share of the
   predicted class's rule mass the answers support), its log form and the energy
   (log-sum-exp over classes of the log form) against the normalised posterior's top
   probability; the default is chosen on the calibration splits. Target AUROC >= 0.98 easy / >= 0.85 hard.
3. Split conformal at alpha = 0.1, calibrated on the calibration split: coverage
   and mean set size on the test split, and over 100 random halvings of both splits
   pooled. Target coverage in [0.88, 0.93].
4. Multi-label: a system of overlapping concept classes ("body is black",
   "has wings", "lives in snow", ...: one class per option any species uses; every
   image belongs to four of them), thresholds per class chosen on the calibration
   split.

Writes benchmarks/figures/calibration-reliability.png and calibration-coverage.png.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from cotembed._classifier import CoTClassifier
from cotembed.cache import open_cache
from cotembed.data import collect_samples, resolve_labels
from cotembed.encoders import load_encoder
from cotembed.reporting._calibration import plot_coverage, plot_reliability
from cotembed.reporting._text import table
from cotembed.scoring import Scorer, ScoringConfig
from cotembed.scoring import _calibration as cal
from cotembed.scoring import _conformal as conformal
from cotembed.scoring import _multilabel as multilabel
from cotembed.scoring import _openset as openset
from cotembed.scoring._functions import sum_normalize
from cotembed.scoring._methods import OPTIONS
from cotembed.scoring._openset import DEFAULT_FIT_SCORE
from cotembed.scoring._openset import FIT_SCORES as FIT
from cotembed.system import System
from cotembed_critters.species import generate_split

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".cotembed-data"
SPECIES = ROOT / "examples/critters/species.yaml"
SYSTEM = ROOT / "examples/critters/system.yaml"
SPLITS = {"easy": {"test": ("critters-easy", 1001), "cal": ("critters-easy-cal", 1101)},
          "hard": {"test": ("critters-hard", 2002), "cal": ("critters-hard-cal", 2202)}}
ECE_TARGET = {"easy": 0.05, "hard": 0.10}
LABEL_FREE_TARGET = 0.15
AUROC_TARGET = {"easy": 0.98, "hard": 0.85}
HELD_OUT, OPEN_SEEDS = 6, (0, 1, 2, 3, 4)
ALPHA, COVERAGE_RANGE, RANDOM_SPLITS = 0.1, (0.88, 0.93), 100
FIGURES = ROOT / "benchmarks" / "figures"


def ensure_split(name: str, seed: int, difficulty: str) -> Path:
    out = DATA / name
    if not (out / ".complete").exists() and not (out.exists() and len(list(out.iterdir())) == 28):
        if out.exists() and any(out.iterdir()):
            sys.exit(f"{out} exists but is incomplete: remove it and rerun")
        generate_split(SPECIES, out, per_class=20, seed=seed, difficulty=difficulty, progress=False)
        (out / ".complete").touch()
    return out


class Split:
    """One split's option cosines, labels (class indices of ``system``) and cot scores."""

    def __init__(self, clf: CoTClassifier, scorer: Scorer, path: Path):
        samples, _ = resolve_labels(collect_samples([path]), clf.system.resolve_label)
        data = clf.embedding_set(samples)
        self.embeddings = data.embeddings
        self.sims = scorer.batch(data.embeddings)[OPTIONS]
        self.labels = data.label_indices(scorer.class_names)
        self.cot = scorer.scores(data.embeddings)


def metrics_row(split: str, label: str, probs: np.ndarray, labels: np.ndarray) -> list[str]:
    m = cal.calibration_metrics(probs, labels)
    return [split, label, f"{100 * m['accuracy']:.1f}%", f"{m['ece']:.3f}", f"{m['nll']:.3f}", f"{m['brier']:.3f}"]


def calibration_section(splits: dict[str, dict[str, Split]], rules: cal.GroupRules, t0: float) -> dict[str, Any]:
    print("### 1. Calibration: ECE before and after (test splits; fits on the calibration split)")
    print()
    rows = [["split", "posterior", "accuracy", "ECE", "NLL", "Brier"]]
    diagrams: dict[str, Any] = {}
    verdicts = []
    for name, s in splits.items():
        test, calib = s["test"], s["cal"]
        fit = cal.fit_posterior(calib.sims, calib.labels, rules, t0, seed=0)
        agreement_t = cal.fit_on_agreement(test.sims, rules, t0)
        scale = cal.fit_scale(calib.cot, calib.labels)
        posteriors = {
            "cot, sum-normalised (today's output)": sum_normalize(test.cot),
            "cot, temperature-scaled (scale fitted on cal)": cal.temperature_scaled(test.cot, scale),
            f"product, model temperature {t0:.3g} (label-free default)": cal.product_posterior(test.sims, rules, t0),
            f"product, fitted on the batch's agreement, T {agreement_t:.3g} (label-free)":
                cal.product_posterior(test.sims, rules, agreement_t),
            f"product, after calibrate (T {fit.temperature:.3g}, weights {'fitted' if fit.per_group else 'kept'})":
                cal.product_posterior(test.sims, rules, fit.temperature, fit.weights),
        }
        for label, probs in posteriors.items():
            rows.append(metrics_row(name, label, probs, test.labels))
        after = cal.ece(posteriors[list(posteriors)[-1]], test.labels)
        free = cal.ece(posteriors[list(posteriors)[2]], test.labels)
        default_top = posteriors[list(posteriors)[2]].argmax(axis=1)
        disagree = float((default_top != test.cot.argmax(axis=1)).mean())
        verdicts.append(f"- {name}: the default output's posterior (product, label-free) and cot's prediction disagree on "
                        f"the top class for {100 * disagree:.1f}% of the inputs (the prediction stays cot's)")
        verdicts.append(f"- {name}: after calibrate ECE {after:.3f} (target <= {ECE_TARGET[name]}: "
                        f"{'met' if after <= ECE_TARGET[name] else 'NOT met'}); label-free default {free:.3f} "
                        f"(target <= {LABEL_FREE_TARGET}: {'met' if free <= LABEL_FREE_TARGET else 'NOT met'})")
        labels_short = ["cot today", "label-free", "calibrated"]
        for short, key in zip(labels_short, (list(posteriors)[0], list(posteriors)[2], list(posteriors)[-1])):
            diagrams[f"{name}: {short}"] = cal.reliability(posteriors[key], test.labels).to_dict()
        if fit.per_group:
            print(f"{name}: calibrate fitted group weights "
                  + ", ".join(f"{g} {w:.2f}" for g, w in fit.group_weights(rules.group_names).items()))
    print()
    print(table(rows, right_align_from=2))
    print()
    print("\n".join(verdicts))
    print()
    plot_reliability(diagrams, FIGURES / "calibration-reliability.png", "critters test splits (ECE, 15 bins)")
    return diagrams


def without_classes(system: System, drop: list[str]) -> System:
    data = system.to_dict()
    data["rules"] = {k: v for k, v in data["rules"].items() if k not in drop}
    return System.from_dict(data, source=f"{system.name} without {len(drop)} classes")


OPEN_SCORES = ("rule support", "log rule support", "energy", "top probability")
ENERGY_TEMPERATURES = (0.5, 1.0, 2.0, 5.0)
"""Temperatures tried on the per-class log rule supports before the log-sum-exp (energy uses 1)."""


NONE_OPTIONS = {"colour": "some other colour", "form": "some other creature", "trait": "something else",
                "scene": "somewhere else"}
"""A "none of these" option per group (``none_option``), worded as a system author would, for the open-set comparison."""


def with_none_options(system: System) -> System:
    data = system.to_dict()
    for group, text in NONE_OPTIONS.items():
        data["groups"][group]["options"].append(text)
        data["groups"][group]["none_option"] = text
    return System.from_dict(data)


def open_scores(test: Split, system: System, clf: CoTClassifier, t0: float, seed: int) -> dict[str, Any]:
    """The scores of every input with ``HELD_OUT`` species (drawn with ``seed``) left out of the system."""
    drop = openset.held_out_classes(system.class_names, HELD_OUT, seed)
    scorer = Scorer.build(without_classes(system, drop), clf.prompt_bank.embed, ScoringConfig(t0), ("cot",))
    rules = cal.GroupRules.from_compiled(scorer.compiled)
    sims = scorer.batch(test.embeddings)[OPTIONS]
    true_names = np.asarray(system.class_names)[test.labels]
    known = ~np.isin(true_names, drop)
    support, predicted = openset.rule_support(sims, rules, t0)
    per_class = np.einsum("bgn,g->bn", cal.group_log_masses(sims, rules, t0), rules.weights) / rules.weights.sum()
    scores = {"rule support": support, "log rule support": openset.log_rule_support(sims, rules, t0)[0],
              "energy": openset.energy(sims, rules, t0)[0],
              "top probability": cal.product_posterior(sims, rules, t0).max(axis=1)}
    scores.update({f"energy T={t:g}": t * openset.support_energy(per_class / t) for t in ENERGY_TEMPERATURES})
    correct = known & (np.asarray(scorer.class_names)[predicted] == true_names)
    marked = Scorer.build(with_none_options(without_classes(system, drop)), clf.prompt_bank.embed, ScoringConfig(t0), ("cot",))
    marked_sims = marked.batch(test.embeddings)[OPTIONS]
    marked_rules = cal.GroupRules.from_compiled(marked.compiled)
    none = {k: FIT[k](marked_sims, marked_rules, t0)[0] for k in ("log rule support", "energy")}
    kept = without_classes(system, drop)
    unused = sum(1 for g in kept.groups for i in range(len(g.options)) if not any(i in r[g.name] for r in kept.rules.values()))
    return {"drop": drop, "known": known, "scores": scores, "correct": correct, "none": none, "unused_options": unused}


def openset_section(splits: dict[str, dict[str, Split]], system: System, clf: CoTClassifier, t0: float) -> None:
    print(f"### 2. Open set: {HELD_OUT} of {len(system.class_names)} species held out of the system")
    print()
    results = {(name, role, seed): open_scores(s[role], system, clf, t0, seed)
               for name, s in splits.items() for role in ("cal", "test") for seed in OPEN_SEEDS}

    def aurocs(name: str, role: str, k: str) -> list[float]:
        return [openset.auroc(r["scores"][k][r["known"]], r["scores"][k][~r["known"]])
                for (n, ro, _), r in results.items() if n == name and ro == role]

    on_cal = {k: float(np.mean([np.mean(aurocs(n, "cal", k)) for n in splits])) for k in OPEN_SCORES}
    chosen = max(on_cal, key=lambda k: on_cal[k])
    print("Best score on the calibration splits (mean AUROC over both, same seeds): "
          + ", ".join(f"{k} {v:.3f}" for k, v in on_cal.items()) + f" -> {chosen} (`--fit-score "
          + chosen.replace(" ", "-") + f"`); the product's default fit score: {DEFAULT_FIT_SCORE}.")
    tried = {t: float(np.mean([np.mean(aurocs(n, "cal", f"energy T={t:g}")) for n in splits])) for t in ENERGY_TEMPERATURES}
    print("Energy's temperature on the same calibration splits (T x log-sum-exp of log rule support / T): "
          + ", ".join(f"T={t:g} {v:.3f}" for t, v in tried.items()) + ".")
    print()
    rows = [["split", "seed", "held out", *(f"AUROC {k}" for k in OPEN_SCORES), *(f"FPR@95 {k}" for k in OPEN_SCORES)]]
    curves: dict[str, Any] = {}
    for (name, role, seed), r in results.items():
        if role != "test":
            continue
        s, known = r["scores"], r["known"]
        rows.append([name, str(seed), ", ".join(r["drop"])]
                    + [f"{openset.auroc(s[k][known], s[k][~known]):.3f}" for k in OPEN_SCORES]
                    + [f"{openset.fpr_at_tpr(s[k][known], s[k][~known]):.3f}" for k in OPEN_SCORES])
        if seed == OPEN_SEEDS[0]:
            for k in (chosen, "top probability"):
                curve = openset.accuracy_coverage(s[k], r["correct"])
                curves[f"{name}, ranked by {k}"] = {"coverage": curve["coverage"].tolist(), "accuracy": curve["accuracy"].tolist()}
    print(table(rows, right_align_from=3))
    print()
    for name in splits:
        for k in OPEN_SCORES:
            a = aurocs(name, "test", k)
            f = [openset.fpr_at_tpr(r["scores"][k][r["known"]], r["scores"][k][~r["known"]])
                 for (n, ro, _), r in results.items() if n == name and ro == "test"]
            line = f"- {name}, {k}: AUROC mean {np.mean(a):.3f} (min {np.min(a):.3f}), FPR@95%TPR mean {np.mean(f):.3f}"
            if k in (chosen, DEFAULT_FIT_SCORE):
                target = AUROC_TARGET[name]
                line += (f" (target AUROC >= {target}: mean {'met' if np.mean(a) >= target else 'NOT met'}, "
                         f"{sum(x >= target for x in a)} of {len(a)} seeds)")
            print(line)
    print()
    print("With a \"none of these\" option per group (" + ", ".join(NONE_OPTIONS.values()) + "), mean AUROC over the seeds:")
    for name in splits:
        for role in ("cal", "test"):
            runs = [r for (n, ro, _), r in results.items() if n == name and ro == role]
            cells = []
            for k in ("log rule support", "energy"):
                without = np.mean([openset.auroc(r["scores"][k][r["known"]], r["scores"][k][~r["known"]]) for r in runs])
                marked = np.mean([openset.auroc(r["none"][k][r["known"]], r["none"][k][~r["known"]]) for r in runs])
                cells.append(f"{k} {without:.3f} -> {marked:.3f}")
            print(f"- {name} {role}: " + "; ".join(cells))
    unused = sorted({r["unused_options"] for r in results.values()})
    print(f"Options no kept species uses (only held-out species do), per seed: {', '.join(map(str, unused))}; where 0, "
          "every unknown input is a new combination of known answers, which a \"none of these\" option cannot catch.")
    print()
    print(f"Accuracy/coverage (test, seed {OPEN_SEEDS[0]}): an input counts as right only if it is of a known species and "
          "predicted as it (22 of 28 species known, so at most ~79 % of inputs can be right).")
    print()
    plot_coverage(curves, FIGURES / "calibration-coverage.png", f"open set: {HELD_OUT} of 28 species unknown (seed {OPEN_SEEDS[0]})")


def conformal_section(splits: dict[str, dict[str, Split]], rules: cal.GroupRules, t0: float) -> None:
    print(f"### 3. Split conformal at alpha = {ALPHA} (label-free default posterior; calibrated on the calibration split)")
    print()
    rows = [["split", "score", "coverage (test)", "mean set size", f"coverage over {RANDOM_SPLITS} random halvings",
             "mean set size"]]
    verdicts = []
    for name, s in splits.items():
        logits = {k: cal.log_posterior(cal.group_log_masses(v.sims, rules, t0), rules.weights) for k, v in s.items()}
        pooled = np.concatenate([logits["cal"], logits["test"]])
        pooled_y = np.concatenate([s["cal"].labels, s["test"].labels])
        for score in ("lac", "aps", "raps"):
            model = conformal.SplitConformal(ALPHA, score, seed=0).fit(logits["cal"], s["cal"].labels)
            sets = model.predict(logits["test"])
            cover = conformal.coverage(sets, s["test"].labels)
            rng = np.random.default_rng(0)
            covers, sizes = [], []
            for r in range(RANDOM_SPLITS):
                order = rng.permutation(len(pooled_y))
                c, t = order[: len(order) // 2], order[len(order) // 2:]
                m = conformal.SplitConformal(ALPHA, score, seed=r).fit(pooled[c], pooled_y[c])
                ps = m.predict(pooled[t])
                covers.append(conformal.coverage(ps, pooled_y[t]))
                sizes.append(conformal.mean_set_size(ps))
            rows.append([name, score, f"{cover:.3f}", f"{conformal.mean_set_size(sets):.2f}",
                         f"{np.mean(covers):.3f} (min {np.min(covers):.3f}, max {np.max(covers):.3f})", f"{np.mean(sizes):.2f}"])
            ok = COVERAGE_RANGE[0] <= cover <= COVERAGE_RANGE[1]
            verdicts.append(f"- {name}, {score}: test coverage {cover:.3f} "
                            f"(target {COVERAGE_RANGE[0]}-{COVERAGE_RANGE[1]}: {'met' if ok else 'NOT met'})")
    print(table(rows, right_align_from=2))
    print()
    print("\n".join(verdicts))
    print()
    print("Sets can be empty: the guarantee is on average over inputs, so where nearly every prediction is right "
          "(easy) the least sure ~10 % get no class rather than every set holding its one sure class (coverage 1.0).")
    print()


def concept_system(system: System) -> tuple[System, list[tuple[str, str]]]:
    """One class per (group, option) some species uses: 'colour is black', 'trait is wings', ..."""
    data = system.to_dict()
    used = {(g, rule[g]) for rule in data["rules"].values() for g in data["groups"]}
    concepts = sorted(used)
    rules = {f"{g}: {o}": {h: (o if h == g else list(spec["options"])) for h, spec in data["groups"].items()}
             for g, o in concepts}
    return System.from_dict({"name": "critter concepts", "groups": data["groups"], "rules": rules}), concepts


def multilabel_section(splits: dict[str, dict[str, Split]], system: System, clf: CoTClassifier, t0: float) -> None:
    concepts_sys, concepts = concept_system(system)
    scorer = Scorer.build(concepts_sys, clf.prompt_bank.embed, ScoringConfig(t0), ("cot",))
    rules = cal.GroupRules.from_compiled(scorer.compiled)
    species_rules = system.to_dict()["rules"]
    print(f"### 4. Multi-label: {len(concepts)} overlapping concept classes (each image holds 4), thresholds chosen on "
          "the calibration split")
    print()
    rows = [["split", "thresholds", "micro F1", "mAP", "mean F1 per class", "worst 3 classes (F1)", "labels per image"]]
    for name, s in splits.items():
        def targets(split: Split) -> np.ndarray:
            names = np.asarray(system.class_names)[split.labels]
            return np.array([[species_rules[n][g] == o for g, o in concepts] for n in names])

        scores = {k: multilabel.class_support(scorer.batch(v.embeddings)[OPTIONS], rules, t0) for k, v in s.items()}
        for per_class in (False, True):
            thresholds = multilabel.fit_thresholds(scores["cal"], targets(s["cal"]), per_class=per_class)
            report = multilabel.multilabel_report(scores["test"], targets(s["test"]), thresholds.predict(scores["test"]),
                                                  scorer.class_names)
            per = report["per_class"]
            assert isinstance(per, dict)
            worst = sorted(per.items(), key=lambda kv: kv[1]["f1"])[:3]
            rows.append([name, "per class" if per_class else "global", f"{report['micro_f1']:.3f}", f"{report['map']:.3f}",
                         f"{np.mean([v['f1'] for v in per.values()]):.3f}",
                         "; ".join(f"{k} {v['f1']:.2f}" for k, v in worst), f"{report['mean_labels']:.2f}"])
    print(table(rows, right_align_from=2))
    print()


def main() -> None:
    encoder = load_encoder("critters")
    cache = open_cache()
    system = System.load(SYSTEM)
    clf = CoTClassifier(system, encoder, cache=cache)
    t0 = clf.temperature
    scorer = clf.scorer_for(("cot",))
    rules = cal.GroupRules.from_compiled(scorer.compiled)
    splits = {name: {role: Split(clf, scorer, ensure_split(folder, seed, name)) for role, (folder, seed) in roles.items()}
              for name, roles in SPLITS.items()}
    print(f"critters model (temperature {t0:.4g}), examples/critters/system.yaml; "
          + "; ".join(f"{n}: test seed {r['test'][1]}, calibration seed {r['cal'][1]}, 560 images each" for n, r in SPLITS.items()))
    print()
    calibration_section(splits, rules, t0)
    openset_section(splits, system, clf, t0)
    conformal_section(splits, rules, t0)
    multilabel_section(splits, system, clf, t0)
    print("Figures: benchmarks/figures/calibration-reliability.png (reliability diagrams), "
          "benchmarks/figures/calibration-coverage.png (accuracy/coverage).")


if __name__ == "__main__":
    main()
