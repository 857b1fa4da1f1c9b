"""Rules, temperature and weights induced from a few labelled examples per class.

A hand-written system fails when its words do not mean to the model what they mean
to the author: on the critters ``hard`` split the model answers "tangerine" for most
colours of the paraphrased system, so a rule that says "crimson" never fires. The
model's own answers on a handful of labelled examples say which option it *does*
pick for each class. :class:`RuleInducer` keeps the system's questions and options
and refits everything else:

1. **Rules.** For each class and group, the option with the highest mean probability
   over the class's examples; further options (up to ``max_options``) join when their
   mean probability is at least ``split_ratio`` times the top one's, so a class whose
   evidence is split accepts both answers.
2. **Calibration.** The softmax temperature, a weight per group (0 drops the group:
   fewer but better questions) and the weight of the class-name term of ``hybrid``
   (0 means plain ``cot``: on critters the name baseline collapses onto one name and
   would pull classes towards it).

Choices are made by accuracy on the same examples, each scored with rules induced on
the other folds (cross-validation, ``folds``), so a split ratio or weight that only fits
the examples it was read from does not win. Between temperatures and rule shapes, ties
go to the higher mean probability of the true class, then to the simpler candidate (the
reference temperature, one option per rule); a weight moves only when it wins examples.
Everything is numpy on cached embeddings: the model is asked only for the system's
prompts, once.

Scikit-learn shaped: ``__init__`` stores parameters, :meth:`RuleInducer.fit` returns
the inducer, and fitted state ends in ``_`` (``system_``, ``temperature_``,
``group_weights_``, ``hybrid_weight_``, ``method_``, ``rule_changes_``, ...).
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from cotembed._embeddings import EmbeddingSet
from cotembed.errors import InputError, NotFittedError, UnknownLabelError
from cotembed.scoring import DEFAULT_TEMPERATURE, Scorer, ScoringConfig, group_softmax, l2_normalize, softmax
from cotembed.system import System

EmbedTexts = Callable[[Sequence[str]], np.ndarray]


class RuleInducer:
    """Induce a system's rules and calibrate it from labelled examples (see the module docstring).

    Parameters
    ----------
    system : System
        The starting system; its groups and options are kept.
    embed : callable
        Prompt texts -> (k, D) embeddings from the model the inputs were embedded with,
        e.g. ``PromptBank.embed``.
    temperature : float, optional
        Reference temperature (default: the system's, else 100); the grid is relative to it.
    temperature_factors : tuple of float
        Multiples of the reference temperature tried when calibrating.
    split_ratios : tuple of float in (0, 1]
        Candidate thresholds for further options to join a rule: an option joins when its mean
        probability is at least this fraction of the top option's.
    max_options : int
        Most options one rule accepts in one group; every cap from 1 to this is tried.
    group_weights : tuple of float >= 0
        Weight grid per group (0 drops the group).
    hybrid_weights : tuple of float >= 0
        Grid for the class-name term (0: plain cot).
    induce_rules : bool
        False keeps the system's rules and only calibrates.
    calibrate : bool
        False keeps the reference temperature and the system's weights, and uses cot.
    folds : int
        Most cross-validation folds (each class needs two examples or more; below that the
        choices are scored on the examples the rules were read from).
    rounds : int
        Passes of coordinate ascent over the group weights and the hybrid weight.
    """

    def __init__(
        self,
        system: System | None = None,
        embed: EmbedTexts | None = None,
        *,
        temperature: float | None = None,
        temperature_factors: Sequence[float] = (0.125, 0.25, 0.5, 1.0, 2.0),
        split_ratios: Sequence[float] = (0.5, 0.3, 0.2, 0.1, 0.05),
        max_options: int = 3,
        group_weights: Sequence[float] = (0.0, 0.5, 1.0, 2.0),
        hybrid_weights: Sequence[float] = (0.0, 0.25, 0.5, 1.0),
        induce_rules: bool = True,
        calibrate: bool = True,
        folds: int = 5,
        rounds: int = 2,
    ):
        self.system = system
        self.embed = embed
        self.temperature = temperature
        self.temperature_factors = temperature_factors
        self.split_ratios = split_ratios
        self.max_options = max_options
        self.group_weights = group_weights
        self.hybrid_weights = hybrid_weights
        self.induce_rules = induce_rules
        self.calibrate = calibrate
        self.folds = folds
        self.rounds = rounds

    # ------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> "RuleInducer":
        valid = self._param_names()
        unknown = [p for p in params if p not in valid]
        if unknown:
            raise InputError(f"RuleInducer: unknown parameter(s) {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if k not in ("system", "embed") and v != _DEFAULTS.get(k)}
        inner = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"RuleInducer({inner})"

    def _check_params(self) -> tuple[System, EmbedTexts, float]:
        problems: list[str] = []
        if not isinstance(self.system, System):
            problems.append(f"system: expected a System, got {type(self.system).__name__}")
        if not callable(self.embed):
            problems.append("embed: expected a function from prompt texts to embeddings (e.g. PromptBank.embed)")
        _grid("temperature_factors", self.temperature_factors, problems, low=0.0, low_open=True)
        _grid("split_ratios", self.split_ratios, problems, low=0.0, low_open=True, high=1.0)
        _grid("group_weights", self.group_weights, problems, low=0.0)
        _grid("hybrid_weights", self.hybrid_weights, problems, low=0.0)
        for name in ("max_options", "folds", "rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "folds" else 1):
                problems.append(f"{name}: expected a whole number >= {0 if name == 'folds' else 1}, got {value!r}")
        if self.group_weights and not any(w > 0 for w in _floats(self.group_weights)):
            problems.append("group_weights: at least one weight must be positive")
        reference = self.temperature
        if reference is None and isinstance(self.system, System):
            reference = self.system.temperature
        reference = DEFAULT_TEMPERATURE if reference is None else reference
        if isinstance(reference, bool) or not isinstance(reference, (int, float)) or not (math.isfinite(reference) and reference > 0):
            problems.append(f"temperature: expected a positive finite number, got {reference!r}")
        if problems:
            raise InputError("RuleInducer: " + "; ".join(problems))
        assert isinstance(self.system, System) and self.embed is not None
        return self.system, self.embed, float(reference)

    # ------------------------------------------------------------------- fit
    def fit(self, X: EmbeddingSet | np.ndarray, y: Sequence[str | None] | None = None) -> "RuleInducer":
        """Induce rules and calibrate from labelled embeddings; returns ``self``.

        ``X`` is an :class:`EmbeddingSet` (its labels are used unless ``y`` is given) or a
        (n, D) array with ``y`` the class names (or aliases). Every class of the system
        needs at least one example.
        """
        system, embed, reference = self._check_params()
        embeddings, labels = _inputs(X, y)
        truth = _label_indices(system, labels)
        compiled = system.compile()
        counts = np.bincount(truth, minlength=compiled.n_classes)
        missing = [f"{c} (0)" for c, n in zip(compiled.class_names, counts) if n == 0]
        if missing:
            raise InputError(f"RuleInducer.fit: every class needs examples; none for {len(missing)} class(es): {', '.join(missing[:20])}"
                             + (" ..." if len(missing) > 20 else ""))

        offsets = compiled.offsets
        option_vectors = l2_normalize(np.asarray(embed(compiled.prompts), dtype=np.float32))
        x = l2_normalize(embeddings)
        option_sims = x @ option_vectors.T
        hybrid_grid = _floats(self.hybrid_weights) if self.calibrate else [0.0]
        use_names = any(w > 0 for w in hybrid_grid)
        name_sims = x @ l2_normalize(np.asarray(embed(compiled.baseline_prompts), dtype=np.float32)).T if use_names else None
        factors = sorted(_floats(self.temperature_factors), key=lambda f: abs(math.log(f)))  # ties go to the reference first
        temperatures = [reference * f for f in factors] if self.calibrate else [reference]
        shapes: list[tuple[float, int] | None] = [None]
        if self.induce_rules:
            shapes = list(_rule_shapes(_floats(self.split_ratios), self.max_options))
        start_weights = np.asarray([g.weight for g in system.groups], dtype=np.float64)
        fixed_rules = (compiled.rule_matrix > 0).astype(np.float32)
        folds = min(self.folds, int(counts.min()))
        fold_of = _fold_index(truth, folds) if folds >= 2 else None

        best: tuple[tuple[int, float], float, tuple[float, int] | None, np.ndarray, float] | None = None
        n_candidates = 0
        for temperature in temperatures:
            probs = group_softmax(option_sims, offsets, temperature)
            name_probs = softmax(name_sims * np.float32(temperature), axis=1) if name_sims is not None else None
            for shape in shapes:
                if shape is None:
                    parts = _group_parts(probs, fixed_rules, offsets)
                else:
                    parts = self._held_out_parts(probs, truth, fold_of, folds, offsets, shape, compiled.n_classes)
                key, weights, hybrid, tried = self._ascend(parts, name_probs, truth, start_weights, hybrid_grid)
                n_candidates += tried
                if best is None or key > best[0]:
                    best = (key, temperature, shape, weights, hybrid)
        assert best is not None
        (hits, _), temperature, shape, weights, hybrid = best

        probs = group_softmax(option_sims, offsets, temperature)
        evidence = _class_means(probs, truth, compiled.n_classes)
        rules = fixed_rules if shape is None else _rules_from_evidence(evidence, offsets, *shape)
        self._finish(system, embed, rules, evidence, temperature, shape, weights, hybrid, counts)
        self.cv_folds_ = folds if fold_of is not None and shape is not None else 0
        self.selection_accuracy_ = hits / len(truth)
        self.n_candidates_ = n_candidates
        self.train_accuracy_ = self.score(embeddings, [compiled.class_names[t] for t in truth])
        return self

    def _held_out_parts(self, probs: np.ndarray, truth: np.ndarray, fold_of: np.ndarray | None, folds: int, offsets: np.ndarray,
                        shape: tuple[float, int], n_classes: int) -> np.ndarray:
        """(B, G, N) per-group class scores, each input scored with rules induced without it (when folds allow)."""
        if fold_of is None:
            rules = _rules_from_evidence(_class_means(probs, truth, n_classes), offsets, *shape)
            return _group_parts(probs, rules, offsets)
        parts = np.empty((len(truth), len(offsets) - 1, n_classes), dtype=np.float32)
        for f in range(folds):
            held = fold_of == f
            rules = _rules_from_evidence(_class_means(probs[~held], truth[~held], n_classes), offsets, *shape)
            parts[held] = _group_parts(probs[held], rules, offsets)
        return parts

    def _ascend(self, parts: np.ndarray, name_probs: np.ndarray | None, truth: np.ndarray, start: np.ndarray,
                hybrid_grid: list[float]) -> tuple[tuple[int, float], np.ndarray, float, int]:
        """Coordinate ascent over group weights and the hybrid weight.

        A move must win examples (more correct), not only probability, so weights stay
        at the system's values unless changing them buys accuracy.
        """
        weights, hybrid = start.copy(), 0.0
        key = _objective(parts, name_probs, truth, weights, hybrid)
        tried = 1
        if not self.calibrate:
            return key, weights, hybrid, tried
        grid = _floats(self.group_weights)
        for _ in range(self.rounds):
            moved = False
            for g in range(len(weights)):
                for value in grid:
                    if value == weights[g]:
                        continue
                    candidate = weights.copy()
                    candidate[g] = value
                    if not (candidate > 0).any():
                        continue
                    tried += 1
                    k = _objective(parts, name_probs, truth, candidate, hybrid)
                    if k[0] > key[0]:
                        key, weights, moved = k, candidate, True
            for value in hybrid_grid:
                if value == hybrid or (value > 0 and name_probs is None):
                    continue
                tried += 1
                k = _objective(parts, name_probs, truth, weights, value)
                if k[0] > key[0]:
                    key, hybrid, moved = k, value, True
            if not moved:
                break
        return key, weights, hybrid, tried

    def _finish(self, system: System, embed: EmbedTexts, rules: np.ndarray, evidence: np.ndarray, temperature: float,
                shape: tuple[float, int] | None, weights: np.ndarray, hybrid: float, counts: np.ndarray) -> None:
        compiled = system.compile()
        offsets = compiled.offsets
        changes: list[dict[str, Any]] = []
        new_rules: dict[str, dict[str, list[int]]] = {}
        for n, cls_name in enumerate(compiled.class_names):
            for g, group in enumerate(system.groups):
                block = rules[offsets[g]: offsets[g + 1], n]
                after = [int(j) for j in np.flatnonzero(block)]
                before = list(system.rules[cls_name][group.name])
                if after != before:
                    new_rules.setdefault(cls_name, {})[group.name] = after
                    changes.append({"class": cls_name, "group": group.name, "before": [group.options[j] for j in before],
                                    "after": [group.options[j] for j in after]})
        induced = system.with_rules(new_rules) if new_rules else system
        names = [g.name for g in system.groups]
        kept = {name: float(w) for name, w in zip(names, weights) if w > 0}
        induced = induced.with_group_weights({k: v for k, v in kept.items() if v != induced.groups[names.index(k)].weight})
        dropped = tuple(name for name, w in zip(names, weights) if w <= 0)
        for name in dropped:
            induced = induced.without_group(name)
        induced = induced.with_temperature(float(temperature))
        self.system_ = induced
        self.embed_ = embed
        self.classes_ = compiled.class_names
        self.temperature_ = float(temperature)
        self.split_ratio_ = None if shape is None else shape[0]
        self.max_options_ = None if shape is None else shape[1]
        self.group_weights_ = {name: float(w) for name, w in zip(names, weights)}
        self.dropped_groups_ = dropped
        self.hybrid_weight_ = float(hybrid)
        self.method_ = "hybrid" if hybrid > 0 else "cot"
        self.config_ = ScoringConfig(self.temperature_, self.hybrid_weight_ if hybrid > 0 else 1.0)
        self.rule_changes_ = changes
        self.evidence_ = evidence
        self.n_examples_ = {c: int(n) for c, n in zip(compiled.class_names, counts)}

    # ------------------------------------------------------------ prediction
    def _fitted(self) -> System:
        system: System | None = getattr(self, "system_", None)
        if system is None:
            raise NotFittedError("this RuleInducer is not fitted yet: call fit(X, y) first")
        return system

    def scorer(self) -> Scorer:
        """A scorer for the induced system under the calibrated settings and method."""
        system = self._fitted()
        return Scorer.build(system, self.embed_, self.config_, (self.method_,))

    def predict(self, X: EmbeddingSet | np.ndarray) -> list[str]:
        embeddings = X.embeddings if isinstance(X, EmbeddingSet) else np.asarray(X, dtype=np.float32)
        return self.scorer().predict(embeddings, self.method_)

    def score(self, X: EmbeddingSet | np.ndarray, y: Sequence[str | None] | None = None) -> float:
        """Accuracy of the induced system (calibrated method) on labelled embeddings."""
        system = self._fitted()
        embeddings, labels = _inputs(X, y)
        truth = _label_indices(system, labels)
        predicted = self.scorer().scores(embeddings, self.method_).argmax(axis=1)
        return float(np.mean(predicted == truth)) if len(truth) else 0.0

    def summary(self) -> dict[str, Any]:
        """What was induced, for reports and the written file's header (JSON-safe)."""
        self._fitted()
        return {
            "temperature": self.temperature_,
            "split_ratio": self.split_ratio_,
            "max_options": self.max_options_,
            "group_weights": self.group_weights_,
            "dropped_groups": list(self.dropped_groups_),
            "hybrid_weight": self.hybrid_weight_,
            "method": self.method_,
            "rule_changes": self.rule_changes_,
            "n_rule_changes": len(self.rule_changes_),
            "n_rule_entries": len(self.classes_) * len(self.group_weights_),
            "n_examples": self.n_examples_,
            "cv_folds": self.cv_folds_,
            "selection_accuracy": self.selection_accuracy_,
            "train_accuracy": self.train_accuracy_,
            "n_candidates": self.n_candidates_,
        }


_DEFAULTS = {p.name: p.default for p in inspect.signature(RuleInducer.__init__).parameters.values() if p.name != "self"}


# ----------------------------------------------------------------- helpers
def _floats(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values]


def _grid(name: str, values: Any, problems: list[str], low: float, low_open: bool = False, high: float | None = None) -> None:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values:
        problems.append(f"{name}: expected a non-empty list of numbers, got {values!r}")
        return
    for v in values:
        bad = isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
        if not bad:
            bad = (v <= low if low_open else v < low) or (high is not None and v > high)
        if bad:
            bounds = f"{'(' if low_open else '['}{low:g}, {'inf)' if high is None else f'{high:g}]'}"
            problems.append(f"{name}: every value must be a finite number in {bounds}, got {v!r}")
            return


def _inputs(X: EmbeddingSet | np.ndarray, y: Sequence[str | None] | None) -> tuple[np.ndarray, list[str | None]]:
    if isinstance(X, EmbeddingSet):
        embeddings, labels = X.embeddings, list(X.labels if y is None else y)
    else:
        if y is None:
            raise InputError("RuleInducer: labels are required: fit(X, y) with y the class of each row, or an EmbeddingSet with labels")
        embeddings, labels = np.asarray(X, dtype=np.float32), list(y)
    embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise InputError(f"RuleInducer: {len(embeddings)} embeddings but {len(labels)} labels")
    if not len(labels):
        raise InputError("RuleInducer: no labelled examples")
    if not np.isfinite(embeddings).all():
        raise InputError("RuleInducer: embeddings contain NaN or infinite values")
    return embeddings, labels


def _label_indices(system: System, labels: Sequence[str | None]) -> np.ndarray:
    index = {c: i for i, c in enumerate(system.class_names)}
    unlabelled = [i for i, lbl in enumerate(labels) if lbl is None or lbl == ""]
    if unlabelled:
        raise InputError(f"RuleInducer: {len(unlabelled)} example(s) have no label (e.g. row {unlabelled[0]}); induce needs labelled examples")
    out = np.empty(len(labels), dtype=np.int64)
    unknown: dict[str, int] = {}
    for row, label in enumerate(labels):
        assert label is not None
        name = system.resolve_label(label)
        if name is None:
            unknown.setdefault(label, row)
            continue
        out[row] = index[name]
    if unknown:
        shown = ", ".join(f"{lbl!r} (row {row})" for lbl, row in list(unknown.items())[:10])
        raise UnknownLabelError(f"RuleInducer: {len(unknown)} label(s) are not classes of the system: {shown}")
    return out


def _fold_index(truth: np.ndarray, folds: int) -> np.ndarray:
    """Fold of each example: its position among its class's examples, modulo ``folds``."""
    fold = np.empty(len(truth), dtype=np.int64)
    for c in np.unique(truth):
        rows = np.flatnonzero(truth == c)
        fold[rows] = np.arange(len(rows)) % folds
    return fold


def _class_means(probs: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, Q) mean option probability over each class's examples (zeros for a class with none)."""
    sums = np.zeros((n_classes, probs.shape[1]), dtype=np.float64)
    np.add.at(sums, truth, probs)
    counts = np.bincount(truth, minlength=n_classes)[:, None]
    return sums / np.maximum(counts, 1)


def _rule_shapes(ratios: list[float], max_options: int) -> list[tuple[float, int]]:
    """Candidate (split ratio, most options per rule), simplest first: one option, then wider rules."""
    shapes = [(1.0, 1)]
    for cap in range(2, max_options + 1):
        shapes.extend((r, cap) for r in sorted(ratios, reverse=True) if r < 1.0)
    return shapes


def _rules_from_evidence(evidence: np.ndarray, offsets: np.ndarray, ratio: float, max_options: int) -> np.ndarray:
    """(Q, N) 0/1 rule matrix: per class and group the top option, plus options within ``ratio`` of it."""
    n_classes = evidence.shape[0]
    rules = np.zeros((evidence.shape[1], n_classes), dtype=np.float32)
    classes = np.arange(n_classes)
    for g in range(len(offsets) - 1):
        block = evidence[:, offsets[g]: offsets[g + 1]]
        order = np.argsort(-block, axis=1, kind="stable")
        top = block[classes, order[:, 0]]
        for rank in range(min(max_options, block.shape[1])):
            j = order[:, rank]
            keep = block[classes, j] >= ratio * top if rank else np.ones(n_classes, dtype=bool)
            keep &= ~((top <= 0) & (rank > 0))
            rules[offsets[g] + j[keep], classes[keep]] = 1.0
    return rules


def _group_parts(probs: np.ndarray, rules: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(B, G, N): each group's contribution to each class's cot score at weight 1."""
    return np.stack([probs[:, offsets[g]: offsets[g + 1]] @ rules[offsets[g]: offsets[g + 1]] for g in range(len(offsets) - 1)], axis=1)


def _objective(parts: np.ndarray, name_probs: np.ndarray | None, truth: np.ndarray, weights: np.ndarray, hybrid: float) -> tuple[int, float]:
    """(correct, mean probability of the true class): accuracy first, calibration breaks ties."""
    scores = np.einsum("bgn,g->bn", parts, weights.astype(np.float32))
    if hybrid > 0 and name_probs is not None:
        scores = scores + np.float32(hybrid) * name_probs
    correct = int((scores.argmax(axis=1) == truth).sum())
    rows = np.arange(len(truth))
    total = scores.sum(axis=1)
    mean_true = float(np.mean(scores[rows, truth] / np.maximum(total, 1e-12)))
    return correct, round(mean_true, 9)


def draw_examples(labels: Sequence[str | None], classes: Sequence[str], k: int, seed: int) -> tuple[list[int], list[int]]:
    """``k`` row indices per class drawn with ``seed``, and the other rows (held out).

    The same labels, classes, k and seed give the same draw, so a figure measured on one
    draw can be reproduced with ``cotembed induce --per-class k --seed seed``.
    """
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    short: list[str] = []
    for cls_name in classes:
        rows = [i for i, label in enumerate(labels) if label == cls_name]
        if len(rows) < k:
            short.append(f"{cls_name} ({len(rows)})")
            continue
        chosen.extend(int(i) for i in rng.choice(rows, size=k, replace=False))
    if short:
        raise InputError(f"{k} examples per class are needed; {len(short)} class(es) have fewer: {', '.join(short[:20])}"
                         + (" ..." if len(short) > 20 else ""))
    taken = set(chosen)
    return chosen, [i for i in range(len(labels)) if i not in taken]


# ------------------------------------------------------------------ output
def write_system(system: System, path: str | Path, header: Sequence[str] = ()) -> Path:
    """Write ``system`` as YAML with ``header`` lines as a leading comment; atomic, and checked by loading it back."""
    path = Path(path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise InputError(f"--out {path}: write the induced system as .yaml or .yml (YAML keeps the header comment)")
    comment = "".join(f"# {line}".rstrip() + "\n" for text in header for line in str(text).splitlines() or [""])
    try:
        system.save(path, comment + ("\n" if comment else ""), verify=True)
    except OSError as exc:
        raise InputError(f"--out {path}: cannot write ({exc.strerror or exc})") from exc
    return path


def describe_changes(changes: Sequence[Mapping[str, Any]], limit: int = 40) -> list[str]:
    """Rule changes as short lines for a header or a table: ``Class.group: old -> new``."""
    lines = [f"{c['class']}.{c['group']}: {' | '.join(c['before'])} -> {' | '.join(c['after'])}" for c in changes[:limit]]
    if len(changes) > limit:
        lines.append(f"... and {len(changes) - limit} more")
    return lines


__all__ = ["NotFittedError", "RuleInducer", "describe_changes", "draw_examples", "write_system"]
