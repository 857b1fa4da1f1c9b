"""Diagnostics with a model and labelled data: how the model answers each question.

Per-question accuracy against chance, options whose prompts the model can hardly
tell apart, options that draw answers from the others (attractors), rules the
model's answers disagree with, and the confusions that cost most. Everything runs
on cached embeddings through :class:`~cotembed.scoring.Scorer`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from cotembed._embeddings import EmbeddingSet
from cotembed.errors import InputError
from cotembed.evaluation._evaluate import MethodResult, evaluate, question_answers
from cotembed.inspection._static import Structure
from cotembed.inspection._suggest import Suggestion, data_suggestions, quoted
from cotembed.scoring import OPTIONS, Scorer, ScoringConfig
from cotembed.system import System

EmbedTexts = Callable[[Sequence[str]], np.ndarray]

DUPLICATE_COSINE = 0.9
"""Options of one group whose filled-in prompts are at least this similar are flagged."""
WEAK_SKILL = 0.25
"""A question whose skill over chance is below this is weak."""
DISAGREEMENT_SHARE = 0.5
"""A rule disagrees with the model when another answer wins at least this share of the class's inputs."""
MIN_CLASS_INPUTS = 3
"""Rule disagreements are only judged for classes with at least this many inputs."""
ATTRACTOR_RATIO = 2.0
ATTRACTOR_EXCESS = 0.15
ATTRACTOR_CLASS_SHARE = 0.25
"""An *attractor* is answered at least twice as often as the rules expect, 15 points more, and for at least a
quarter of the inputs of two or more classes whose rules do not accept it: it draws answers from the other options."""


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
    s = Structure(system)
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
    out.suggestions = data_suggestions(out)
    return out


def _confusion_entry(s: Structure, item: dict[str, Any], a: int, b: int, answers: np.ndarray, questions: dict[str, QuestionStats],
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
                               f"as it does for {100 * disagreement['answered_overall']:.0f}% of all inputs, instead of {quoted(a_opts)}: reword {disagreement['answer']!r} "
                               f"or {quoted(a_opts)} so the model can tell them apart")
    elif disagreement is not None:
        entry["suggestion"] = (f"the model answers {name!r} with {disagreement['answer']!r} for {100 * disagreement['share']:.0f}% of {true}'s inputs "
                               f"but its rule says {quoted(disagreement['rule'])}: check {true}'s rule in {name!r} "
                               "(cotembed induce sets rules from labelled examples)")
    elif q.weak:
        entry["suggestion"] = (f"{true} and {pred} are told apart by {name!r} ({quoted(a_opts)} vs {quoted(b_opts)}), which the model "
                               f"answers at {100 * q.accuracy:.0f}% (chance {100 * q.chance:.0f}%): reword those options")
    elif len(separating) == 1:
        entry["suggestion"] = (f"{true} and {pred} differ only in {name!r} ({quoted(a_opts)} vs {quoted(b_opts)}): add a second question "
                               "that separates them")
    else:
        entry["suggestion"] = (f"{name!r} sided with {pred} on {100 * sided[g]:.0f}% of these inputs: make {quoted(a_opts)} and {quoted(b_opts)} "
                               f"easier to tell apart, or give {name!r} less weight")
    return entry
