"""Diagnostics of a classification system: what its rules can tell apart, and how a model answers it.

The article's lesson is that the system decides everything, so a failing system
should say *why* it fails. Two levels:

* **Static** (:func:`static_report`, no model): classes that no question separates,
  pairs that a single question separates (one wrong answer confuses them), options no
  rule uses or only one class uses, how much each group tells about the class
  (entropy of the partition of classes it induces), how much two groups repeat each
  other (normalised mutual information), and the accuracy the rules could reach if
  every question were answered right (the *ceiling*).
* **With a model and labelled data** (:func:`inspect_system`): per-question accuracy
  against chance, questions answered no better than chance, options whose prompts the
  model can hardly tell apart, rules the model's answers disagree with, and the
  confusions that cost most, each with a concrete suggestion.

Everything runs on cached embeddings through :class:`~cotembed.scoring.Scorer` and
:func:`~cotembed.evaluate.evaluate`; nothing here changes a system or the model.

Definitions (classes weigh equally; a class that accepts several options in a group
spreads its unit mass evenly over them):

* partition of group g: ``p_g(j) = 1/N * sum_c [j in S_c^g] / |S_c^g|``; the group's
  information is its entropy ``H_g = -sum_j p_g(j) log2 p_g(j)`` (at most
  ``log2 N``, the class entropy).
* redundancy of groups g and h: ``NMI = I(g; h) / ((H_g + H_h) / 2)`` from the joint
  ``p(j, k) = 1/N * sum_c [j in S_c^g][k in S_c^h] / (|S_c^g| |S_c^h|)``
  (1 when both carry nothing, as in scikit-learn).
* a group *separates* two classes when their option sets in it are disjoint, so no
  answer fits both.
* the ceiling: an oracle answers every question of an input of class c with an option
  c accepts (uniformly among them when it accepts several). The true class then
  reaches the highest possible CoT score; every class that accepts all the answers
  ties with it, and a tie is broken uniformly. ``ceiling_c = E[1 / #tied]`` and the
  ceiling is the mean over classes. With one option per rule it is
  ``#distinct rules / N``: classes with identical rules share their accuracy.
* chance of a question: the accuracy of a uniformly random answer,
  ``mean over inputs of |S_true^g| / #options``; *skill* is
  ``(accuracy - chance) / (1 - chance)``. A question is *at chance* when its accuracy
  is not above ``chance + 2 standard errors`` and *weak* when its skill is below
  ``weak_skill`` (default 0.25).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from cotembed.embeddings import EmbeddingSet
from cotembed.errors import InputError
from cotembed.evaluate import MethodResult, evaluate, question_answers
from cotembed.scoring import OPTIONS, Scorer, ScoringConfig
from cotembed.system import System

EmbedTexts = Callable[[Sequence[str]], np.ndarray]

DUPLICATE_COSINE = 0.9
"""Options of one group whose filled-in prompts are at least this similar are flagged."""
WEAK_SKILL = 0.25
"""A question whose skill over chance is below this is weak."""
REDUNDANT_NMI = 0.9
"""Two groups with at least this normalised mutual information largely repeat each other."""
LISTED_PAIRS = 1000
"""At most this many fragile (and inseparable) pairs are listed; the counts are always exact."""
CEILING_SAMPLES = 256
"""Oracle answer combinations enumerated per class; above this they are sampled (seeded)."""
DISAGREEMENT_SHARE = 0.5
"""A rule disagrees with the model when another answer wins at least this share of the class's inputs."""
MIN_CLASS_INPUTS = 3
"""Rule disagreements are only judged for classes with at least this many inputs."""
ATTRACTOR_RATIO = 2.0
ATTRACTOR_EXCESS = 0.15
ATTRACTOR_CLASS_SHARE = 0.25
"""An *attractor* is answered at least twice as often as the rules expect, 15 points more, and for at least a
quarter of the inputs of two or more classes whose rules do not accept it: it draws answers from the other options."""


SUGGESTION_ORDER = ("identical-rules", "inseparable", "weak-question", "attractor", "near-duplicate", "rule-disagreement",
                    "confusion", "no-information", "unused-option", "redundant", "fragile")
"""Kinds of suggestion, most harmful first: the order a report lists them in."""


@dataclass(frozen=True)
class Suggestion:
    """One concrete thing to change, in words, with the classes and groups it concerns."""

    kind: str
    text: str
    classes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "classes": list(self.classes), "groups": list(self.groups)}


# ---------------------------------------------------------------- structure
class _Structure:
    """A system's rules as per-group membership matrices (N classes x options)."""

    def __init__(self, system: System):
        compiled = system.compile()
        self.system = system
        self.classes = compiled.class_names
        self.groups = system.groups
        self.offsets = compiled.offsets
        member = compiled.rule_matrix > 0  # (Q, N)
        self.member = [member[self.offsets[g]: self.offsets[g + 1]].T.copy() for g in range(len(self.groups))]
        self.sizes = [m.sum(axis=1) for m in self.member]  # options each class accepts, per group

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def options_of(self, g: int, c: int) -> list[str]:
        return [self.groups[g].options[j] for j in np.flatnonzero(self.member[g][c])]

    def partition(self, g: int) -> np.ndarray:
        """p_g(j): the share of classes in each option (fractional for multi-option rules)."""
        weights = self.member[g] / self.sizes[g][:, None]
        return weights.sum(axis=0) / self.n_classes

    def separation_counts(self, rows: slice) -> np.ndarray:
        """(rows, N): how many groups separate each class in ``rows`` from every class."""
        counts = np.zeros((rows.stop - rows.start, self.n_classes), dtype=np.int32)
        for m in self.member:
            overlap = m[rows].astype(np.float32) @ m.T.astype(np.float32)
            counts += overlap == 0
        return counts


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) if len(p) else 0.0


def _nmi(s: _Structure, g: int, h: int, entropies: list[float]) -> float:
    wg = s.member[g] / s.sizes[g][:, None]
    wh = s.member[h] / s.sizes[h][:, None]
    joint = (wg.T @ wh) / s.n_classes
    pg, ph = joint.sum(axis=1), joint.sum(axis=0)
    nz = joint > 0
    mutual = float((joint[nz] * np.log2(joint[nz] / np.outer(pg, ph)[nz])).sum())
    mean_h = (entropies[g] + entropies[h]) / 2
    return 1.0 if mean_h == 0 else max(0.0, min(1.0, mutual / mean_h))


def _ceiling(s: _Structure, seed: int = 0) -> np.ndarray:
    """Per class: E[1 / #classes tied with it] when every question is answered right (see module doc)."""
    if all((sizes == 1).all() for sizes in s.sizes):
        # One option per rule: the oracle's answers are the class's rule, so the tie is its identical-rule set.
        rows = np.stack([m.argmax(axis=1) for m in s.member], axis=1)
        _, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
        return 1.0 / counts[inverse.reshape(-1)]
    rng = np.random.default_rng(seed)
    out = np.empty(s.n_classes)
    for c in range(s.n_classes):
        accepted = [np.flatnonzero(m[c]) for m in s.member]
        total = math.prod(len(a) for a in accepted)
        if total <= CEILING_SAMPLES:
            combos = np.asarray(list(itertools.product(*accepted)), dtype=np.int64).reshape(-1, len(accepted))
        else:
            combos = np.stack([rng.choice(a, CEILING_SAMPLES) for a in accepted], axis=1)
        fits = np.ones((len(combos), s.n_classes), dtype=bool)
        for g, m in enumerate(s.member):
            fits &= m[:, combos[:, g]].T
        out[c] = float(np.mean(1.0 / fits.sum(axis=1)))
    return out


# ------------------------------------------------------------------- static
@dataclass
class GroupInfo:
    name: str
    n_options: int
    n_used: int
    entropy_bits: float
    max_bits: float
    """The most a group with this many options could tell: min(log2 options, log2 classes)."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "n_options": self.n_options, "n_used": self.n_used,
                "entropy_bits": self.entropy_bits, "max_bits": self.max_bits}


@dataclass
class StaticReport:
    """What the rules alone can and cannot do; see the module docstring for the definitions."""

    system: dict[str, Any]
    identical: list[list[str]]
    inseparable: list[tuple[str, str]]
    n_inseparable: int
    fragile: list[dict[str, Any]]
    n_fragile: int
    fragile_by_group: dict[str, int]
    unused_options: dict[str, list[str]]
    single_class_options: dict[str, list[dict[str, str]]]
    groups: list[GroupInfo]
    class_entropy_bits: float
    redundancy: list[list[float]]
    redundant_pairs: list[dict[str, Any]]
    ceiling: float
    ceiling_per_class: dict[str, float]
    suggestions: list[Suggestion] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "identical_rules": self.identical,
            "inseparable_pairs": [list(p) for p in self.inseparable],
            "n_inseparable_pairs": self.n_inseparable,
            "fragile_pairs": self.fragile,
            "n_fragile_pairs": self.n_fragile,
            "fragile_pairs_by_group": self.fragile_by_group,
            "unused_options": self.unused_options,
            "single_class_options": self.single_class_options,
            "groups": [g.to_dict() for g in self.groups],
            "class_entropy_bits": self.class_entropy_bits,
            "redundancy": {"groups": [g.name for g in self.groups], "nmi": self.redundancy},
            "redundant_pairs": self.redundant_pairs,
            "ceiling": self.ceiling,
            "ceiling_per_class": self.ceiling_per_class,
            "suggestions": [s.to_dict() for s in self.suggestions],
        }


def static_report(system: System, *, redundant_nmi: float = REDUNDANT_NMI, listed_pairs: int = LISTED_PAIRS) -> StaticReport:
    """Everything that follows from the rules alone (no model, no data)."""
    s = _Structure(system)
    names = s.classes
    identical = system.identical_rules()
    tied = {c for tie in identical for c in tie}

    inseparable: list[tuple[str, str]] = []
    fragile: list[dict[str, Any]] = []
    n_fragile = n_inseparable = 0
    by_group = dict.fromkeys((g.name for g in s.groups), 0)
    block = 512
    for start in range(0, s.n_classes, block):
        rows = slice(start, min(start + block, s.n_classes))
        counts = s.separation_counts(rows)
        for i, j in zip(*np.nonzero(counts <= 1)):
            a, b = start + int(i), int(j)
            if b <= a:
                continue
            if counts[i, j] == 0:
                if not (names[a] in tied and names[b] in tied and _same_rule(system, names[a], names[b])):
                    n_inseparable += 1
                    if len(inseparable) < listed_pairs:
                        inseparable.append((names[a], names[b]))
                continue
            n_fragile += 1
            g = next(g for g, m in enumerate(s.member) if not (m[a] & m[b]).any())
            by_group[s.groups[g].name] += 1
            if len(fragile) < listed_pairs:
                fragile.append({"a": names[a], "b": names[b], "group": s.groups[g].name,
                                "a_options": s.options_of(g, a), "b_options": s.options_of(g, b)})

    unused: dict[str, list[str]] = {}
    single: dict[str, list[dict[str, str]]] = {}
    infos: list[GroupInfo] = []
    entropies: list[float] = []
    for g, group in enumerate(s.groups):
        users = s.member[g].sum(axis=0)
        if (users == 0).any():
            unused[group.name] = [group.options[j] for j in np.flatnonzero(users == 0)]
        only = np.flatnonzero(users == 1)
        if len(only):
            single[group.name] = [{"option": group.options[j], "class": names[int(np.flatnonzero(s.member[g][:, j])[0])]} for j in only]
        h = _entropy(s.partition(g))
        entropies.append(h)
        infos.append(GroupInfo(group.name, len(group.options), int((users > 0).sum()), h,
                               min(math.log2(len(group.options)), math.log2(s.n_classes))))
    n_groups = len(s.groups)
    nmi = [[1.0] * n_groups for _ in range(n_groups)]
    for g in range(n_groups):
        for h in range(g + 1, n_groups):
            nmi[g][h] = nmi[h][g] = _nmi(s, g, h, entropies)
    redundant = [{"a": s.groups[g].name, "b": s.groups[h].name, "nmi": nmi[g][h]}
                 for g in range(n_groups) for h in range(g + 1, n_groups) if nmi[g][h] >= redundant_nmi]
    ceiling = _ceiling(s)
    report = StaticReport(
        system={"name": system.name, "hash": system.fingerprint, "n_groups": n_groups, "n_classes": s.n_classes,
                "n_prompts": system.n_prompts},
        identical=identical,
        inseparable=inseparable,
        n_inseparable=n_inseparable,
        fragile=fragile,
        n_fragile=n_fragile,
        fragile_by_group={k: v for k, v in by_group.items() if v},
        unused_options=unused,
        single_class_options=single,
        groups=infos,
        class_entropy_bits=math.log2(s.n_classes),
        redundancy=nmi,
        redundant_pairs=redundant,
        ceiling=float(ceiling.mean()),
        ceiling_per_class={names[c]: float(v) for c, v in enumerate(ceiling) if v < 1.0},
    )
    report.suggestions = _static_suggestions(report)
    return report


def _same_rule(system: System, a: str, b: str) -> bool:
    return dict(system.rules[a]) == dict(system.rules[b])


def _quoted(items: Sequence[str]) -> str:
    return " or ".join(repr(x) for x in items)


def _static_suggestions(r: StaticReport) -> list[Suggestion]:
    out: list[Suggestion] = []
    for tie in r.identical:
        out.append(Suggestion(
            "identical-rules",
            f"add a question that separates {_and(tie)} (they differ in no group; cot can only guess among them, "
            f"hybrid only by their names)",
            tuple(tie)))
    for a, b in r.inseparable[:20]:
        out.append(Suggestion("inseparable", f"{a} and {b} share an option in every group, so no answer tells them apart: "
                                             "narrow one of their rules or add a question that separates them", (a, b)))
    for group, n in sorted(r.fragile_by_group.items(), key=lambda kv: -kv[1]):
        out.append(Suggestion("fragile", f"{n} pair(s) of classes differ only in {group!r}: one wrong answer there confuses them; "
                                         f"add a second question that separates them (see fragile_pairs)", groups=(group,)))
    for group, options in r.unused_options.items():
        out.append(Suggestion("unused-option", f"no rule uses {_quoted(options)} in {group!r}: give it to the classes it describes "
                                               "or remove it (it only takes probability from the others)", groups=(group,)))
    for info in r.groups:
        if info.entropy_bits == 0:
            out.append(Suggestion("no-information", f"every class gives the same answer to {info.name!r}: it cannot help; "
                                                    "drop it or split its option", groups=(info.name,)))
    if r.redundant_pairs:
        pairs = ", ".join(f"{p['a']!r}/{p['b']!r} ({p['nmi']:.2f})" for p in r.redundant_pairs)
        groups = tuple(dict.fromkeys(g for p in r.redundant_pairs for g in (p["a"], p["b"])))
        out.append(Suggestion("redundant", f"these groups split the classes almost the same way (normalised mutual information): {pairs}; "
                                           "together they tell little more than one of them (they only guard against a wrong answer): "
                                           "replace one of each pair with a question about something else", groups=groups))
    return out


def _and(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ----------------------------------------------------------------- with data
@dataclass
class QuestionStats:
    group: str
    accuracy: float
    chance: float
    skill: float
    std_error: float
    at_chance: bool
    weak: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DataReport:
    """How one model answers the system's questions on labelled inputs."""

    model: str
    method: str
    temperature: float
    hybrid_weight: float
    n_inputs: int
    accuracy: float
    chance: float
    questions: list[QuestionStats]
    answer_shares: dict[str, list[dict[str, Any]]]
    attractors: list[dict[str, Any]]
    rule_disagreements: list[dict[str, Any]]
    confusions: list[dict[str, Any]]
    suggestions: list[Suggestion] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "method": self.method,
            "temperature": self.temperature,
            "hybrid_weight": self.hybrid_weight,
            "n_inputs": self.n_inputs,
            "accuracy": self.accuracy,
            "chance": self.chance,
            "questions": [q.to_dict() for q in self.questions],
            "answer_shares": self.answer_shares,
            "attractors": self.attractors,
            "rule_disagreements": self.rule_disagreements,
            "confusions": self.confusions,
            "suggestions": [s.to_dict() for s in self.suggestions],
        }


def near_duplicate_options(system: System, embed: EmbedTexts, threshold: float = DUPLICATE_COSINE) -> list[dict[str, Any]]:
    """Pairs of options in one group whose filled-in prompts have cosine >= ``threshold``.

    The model can hardly tell such prompts apart, so their softmax splits one answer's
    probability between them at random.
    """
    if not (math.isfinite(threshold) and -1.0 <= threshold <= 1.0):
        raise InputError(f"duplicate threshold must be a cosine in [-1, 1], got {threshold!r}")
    out: list[dict[str, Any]] = []
    for group in system.groups:
        vectors = np.asarray(embed(group.prompts()), dtype=np.float32)
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        cos = vectors @ vectors.T
        for i, j in zip(*np.triu_indices(len(group.options), 1)):
            if cos[i, j] >= threshold:
                out.append({"group": group.name, "a": group.options[i], "b": group.options[j], "cosine": float(cos[i, j])})
    out.sort(key=lambda d: -d["cosine"])
    return out


def data_report(system: System, embed: EmbedTexts, data: EmbeddingSet, config: ScoringConfig, method: str = "cot", *,
                weak_skill: float = WEAK_SKILL, max_confusions: int = 10) -> DataReport:
    """Per-question accuracy, answer shares, rule disagreements and costly confusions on labelled data."""
    if OPTIONS not in config.method(method).prompt_sets(system.compile(), config):
        raise InputError(f"inspect needs a method that asks the questions (e.g. cot, hybrid), not {method!r}")
    if len(data) == 0:
        raise InputError("inspect: no labelled inputs to inspect")
    if not (math.isfinite(weak_skill) and 0.0 <= weak_skill <= 1.0):
        raise InputError(f"weak skill must be in [0, 1], got {weak_skill!r}")
    s = _Structure(system)
    truth = data.label_indices(s.classes)
    scorer = Scorer.build(system, embed, config, tuple(dict.fromkeys((method, "cot"))))
    report = evaluate(scorer, data, (method,))
    result = report.methods[method]
    if not isinstance(result, MethodResult):
        raise InputError(f"inspect needs a method with one answer per input, not the seeded method {method!r}")
    answers = np.concatenate([question_answers(batch.option_probs, s.offsets) for _, batch in scorer.batches(data.embeddings, ("cot",))])
    answers = answers - s.offsets[:-1]  # option index within each group
    n = len(truth)

    questions: list[QuestionStats] = []
    shares: dict[str, list[dict[str, Any]]] = {}
    for g, group in enumerate(s.groups):
        member = s.member[g]
        hits = member[truth, answers[:, g]]
        accuracy = float(hits.mean())
        chance = float(np.mean(s.sizes[g][truth] / len(group.options)))
        std_error = math.sqrt(max(chance * (1 - chance), 1e-12) / n)
        skill = (accuracy - chance) / (1 - chance) if chance < 1 else 0.0
        questions.append(QuestionStats(group.name, accuracy, chance, skill, std_error,
                                       accuracy <= chance + 2 * std_error, skill < weak_skill))
        answered = np.bincount(answers[:, g], minlength=len(group.options)) / n
        expected = (member[truth] / s.sizes[g][truth][:, None]).mean(axis=0)
        shares[group.name] = [{"option": o, "answered": float(a), "expected": float(e)} for o, a, e in zip(group.options, answered, expected)]

    # Per group, the share of each class's inputs given each answer (classes with too few inputs are not judged).
    judged = np.flatnonzero(np.bincount(truth, minlength=s.n_classes) >= MIN_CLASS_INPUTS)
    class_shares = []
    for g, group in enumerate(s.groups):
        counts = np.zeros((s.n_classes, len(group.options)))
        np.add.at(counts, (truth, answers[:, g]), 1)
        class_shares.append(counts / np.maximum(counts.sum(axis=1, keepdims=True), 1))
    attractors = []
    for g, group in enumerate(s.groups):
        for j, o in enumerate(shares[group.name]):
            drawn = [int(c) for c in judged if not s.member[g][c, j] and class_shares[g][c, j] >= ATTRACTOR_CLASS_SHARE]
            if (o["answered"] >= ATTRACTOR_RATIO * o["expected"] and o["answered"] - o["expected"] >= ATTRACTOR_EXCESS
                    and len(drawn) >= 2):
                attractors.append({"group": group.name, "option": o["option"], "answered": o["answered"], "expected": o["expected"],
                                   "drawn_from": [s.classes[c] for c in drawn]})
    attracting = {(a["group"], a["option"]) for a in attractors}
    disagreements: list[dict[str, Any]] = []
    for c in judged:
        cls_name = s.classes[c]
        n_c = int((truth == c).sum())
        for g, group in enumerate(s.groups):
            top = int(class_shares[g][c].argmax())
            share = float(class_shares[g][c, top])
            if not s.member[g][c, top] and share >= DISAGREEMENT_SHARE:
                disagreements.append({"class": cls_name, "group": group.name, "rule": s.options_of(g, int(c)),
                                      "answer": group.options[top], "share": share, "n": n_c,
                                      "attractor": (group.name, group.options[top]) in attracting,
                                      "answered_overall": shares[group.name][top]["answered"]})
    disagreements.sort(key=lambda d: -d["share"])

    q_by_name = {q.group: q for q in questions}
    errors = max(1, result.total - result.correct)
    confusions = []
    predicted = scorer.scores(data.embeddings, method).argmax(axis=1)
    index = {c: i for i, c in enumerate(s.classes)}
    for item in result.top_confusions(max_confusions):
        a, b = index[item["true"]], index[item["predicted"]]
        wrong = (truth == a) & (predicted == b)
        confusions.append(_confusion_entry(s, item, a, b, answers[wrong], q_by_name, disagreements, errors))

    out = DataReport(
        model=data.model_key, method=method, temperature=config.temperature, hybrid_weight=config.hybrid_weight,
        n_inputs=n, accuracy=float(result.accuracy or 0.0), chance=1.0 / s.n_classes, questions=questions,
        answer_shares=shares, attractors=attractors, rule_disagreements=disagreements, confusions=confusions,
    )
    out.suggestions = _data_suggestions(out)
    return out


def _confusion_entry(s: _Structure, item: dict[str, Any], a: int, b: int, answers: np.ndarray, questions: dict[str, QuestionStats],
                     disagreements: list[dict[str, Any]], errors: int) -> dict[str, Any]:
    """One costly confusion: which groups separate the pair, which one the model got wrong, and what to do."""
    true, pred = item["true"], item["predicted"]
    separating = [g for g, m in enumerate(s.member) if not (m[a] & m[b]).any()]
    entry: dict[str, Any] = {**item, "share_of_errors": item["count"] / errors,
                             "separating_groups": [s.groups[g].name for g in separating]}
    if not separating:
        entry["suggestion"] = f"add a question that separates {true} and {pred} (they differ in no group)"
        return entry
    # A rule of the true class that the model's answers contradict is the first suspect; otherwise
    # the separating group that sided with the predicted class most often on these inputs.
    sided = {g: float(np.mean(s.member[g][b, answers[:, g]])) if len(answers) else 0.0 for g in separating}
    names = {s.groups[g].name: g for g in separating}
    suspects = [d for d in disagreements if d["class"] == true and d["group"] in names]
    disagreement = max(suspects, key=lambda d: (not d["attractor"], d["share"])) if suspects else None
    if disagreement is not None:
        g = names[disagreement["group"]]
    else:
        g = max(separating, key=lambda k: (sided[k], -questions[s.groups[k].name].skill))
    name = s.groups[g].name
    q = questions[name]
    entry["deciding_group"] = name
    entry["sided_with_predicted"] = sided[g]
    a_opts, b_opts = s.options_of(g, a), s.options_of(g, b)
    if disagreement is not None and disagreement["attractor"]:
        entry["suggestion"] = (f"the model answers {name!r} with {disagreement['answer']!r} for {100 * disagreement['share']:.0f}% of {true}'s inputs, "
                               f"as it does for {100 * disagreement['answered_overall']:.0f}% of all inputs, instead of {_quoted(a_opts)}: reword {disagreement['answer']!r} "
                               f"or {_quoted(a_opts)} so the model can tell them apart")
    elif disagreement is not None:
        entry["suggestion"] = (f"the model answers {name!r} with {disagreement['answer']!r} for {100 * disagreement['share']:.0f}% of {true}'s inputs "
                               f"but its rule says {_quoted(disagreement['rule'])}: check {true}'s rule in {name!r} "
                               "(cotembed induce sets rules from labelled examples)")
    elif q.weak:
        entry["suggestion"] = (f"{true} and {pred} are told apart by {name!r} ({_quoted(a_opts)} vs {_quoted(b_opts)}), which the model "
                               f"answers at {100 * q.accuracy:.0f}% (chance {100 * q.chance:.0f}%): reword those options")
    elif len(separating) == 1:
        entry["suggestion"] = (f"{true} and {pred} differ only in {name!r} ({_quoted(a_opts)} vs {_quoted(b_opts)}): add a second question "
                               "that separates them")
    else:
        entry["suggestion"] = (f"{name!r} sided with {pred} on {100 * sided[g]:.0f}% of these inputs: make {_quoted(a_opts)} and {_quoted(b_opts)} "
                               f"easier to tell apart, or give {name!r} less weight")
    return entry


def _data_suggestions(r: DataReport) -> list[Suggestion]:
    out: list[Suggestion] = []
    for q in r.questions:
        if not (q.weak or q.at_chance):
            continue
        level = "no better than chance" if q.at_chance else "barely above chance"
        never = [o["option"] for o in r.answer_shares[q.group] if o["answered"] == 0 and o["expected"] > 0]
        extra = f"; the model never answers {_and([repr(o) for o in never])}" if never else ""
        out.append(Suggestion("weak-question", f"group {q.group!r} answered at {100 * q.accuracy:.1f}% vs chance {100 * q.chance:.1f}% "
                                               f"({level}{extra}): reword its options or drop it", groups=(q.group,)))
    for a in r.attractors:
        drawn = a["drawn_from"]
        listed = ", ".join(drawn[:8]) + (f" and {len(drawn) - 8} more" if len(drawn) > 8 else "")
        out.append(Suggestion("attractor", f"the model answers {a['group']!r} with {a['option']!r} for {100 * a['answered']:.0f}% of inputs "
                                           f"(the rules expect {100 * a['expected']:.0f}%), including a quarter or more of the inputs of "
                                           f"{len(drawn)} classes whose rules say otherwise ({listed}): it draws answers from the other options; "
                                           "reword it or the options it takes answers from", tuple(drawn), (a["group"],)))
    by_group: dict[str, list[dict[str, Any]]] = {}
    for d in r.rule_disagreements:
        if not d["attractor"]:
            by_group.setdefault(d["group"], []).append(d)
    for group, items in by_group.items():
        listed = "; ".join(f"{d['class']} (rule {_quoted(d['rule'])}, answered {d['answer']!r} on {100 * d['share']:.0f}%)" for d in items[:8])
        more = f" and {len(items) - 8} more" if len(items) > 8 else ""
        out.append(Suggestion("rule-disagreement", f"in {group!r} the model's answers disagree with {len(items)} rule(s): {listed}{more}: "
                                                   "check those rules (cotembed induce sets them from labelled examples)",
                              tuple(d["class"] for d in items), (group,)))
    for c in r.confusions:
        out.append(Suggestion("confusion", f"{c['true']} -> {c['predicted']} ({c['count']} inputs, {100 * c['share_of_errors']:.0f}% of errors): "
                                           f"{c['suggestion']}", (c["true"], c["predicted"]),
                              tuple(c.get("separating_groups", ()))))
    return out


# --------------------------------------------------------------------- both
@dataclass
class Inspection:
    """The static report, and with a model the near-duplicate options, and with data the data report."""

    static: StaticReport
    near_duplicates: list[dict[str, Any]] | None = None
    data: DataReport | None = None
    duplicate_threshold: float = DUPLICATE_COSINE

    @property
    def suggestions(self) -> list[Suggestion]:
        """Every suggestion, the ones that cost most accuracy first (see ``SUGGESTION_ORDER``)."""
        out = list(self.static.suggestions)
        for d in self.near_duplicates or ():
            out.append(Suggestion("near-duplicate", f"in {d['group']!r}, {d['a']!r} and {d['b']!r} read almost the same to the model "
                                                    f"(cosine {d['cosine']:.3f}): merge them or reword one", groups=(d["group"],)))
        if self.data is not None:
            out.extend(self.data.suggestions)
        rank = {kind: i for i, kind in enumerate(SUGGESTION_ORDER)}
        return sorted(out, key=lambda s: rank.get(s.kind, len(rank)))

    def to_dict(self) -> dict[str, Any]:
        static = self.static.to_dict()
        static.pop("suggestions")
        return {
            "system": static.pop("system"),
            "static": static,
            "near_duplicates": self.near_duplicates,
            "duplicate_threshold": self.duplicate_threshold if self.near_duplicates is not None else None,
            "data": None if self.data is None else {k: v for k, v in self.data.to_dict().items() if k != "suggestions"},
            "suggestions": [s.to_dict() for s in self.suggestions],
        }


def inspect_system(
    system: System,
    *,
    embed: EmbedTexts | None = None,
    data: EmbeddingSet | None = None,
    config: ScoringConfig | None = None,
    method: str = "cot",
    duplicate_threshold: float = DUPLICATE_COSINE,
    weak_skill: float = WEAK_SKILL,
    max_confusions: int = 10,
) -> Inspection:
    """Static diagnostics; with ``embed`` (e.g. ``PromptBank.embed``) near-duplicate options; with ``data`` and ``config`` the rest."""
    static = static_report(system)
    duplicates = near_duplicate_options(system, embed, duplicate_threshold) if embed is not None else None
    report = None
    if data is not None:
        if embed is None or config is None:
            raise InputError("inspecting with data needs the model's prompt embeddings (embed=) and a scoring config (config=)")
        report = data_report(system, embed, data, config, method, weak_skill=weak_skill, max_confusions=max_confusions)
    return Inspection(static, duplicates, report, duplicate_threshold)


__all__ = [
    "DUPLICATE_COSINE",
    "WEAK_SKILL",
    "DataReport",
    "GroupInfo",
    "Inspection",
    "QuestionStats",
    "StaticReport",
    "Suggestion",
    "data_report",
    "inspect_system",
    "near_duplicate_options",
    "static_report",
]
