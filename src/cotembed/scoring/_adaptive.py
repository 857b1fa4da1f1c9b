"""Adaptive questioning ("twenty questions"): the scoring method ``adaptive`` (pure numpy).

Per input, keep a posterior over the classes, ask next the question (group) with
the highest expected information gain under it, fold its answer in, and stop as
soon as the top class is probable enough (parameter ``confidence``) or the budget
(``max_questions``) is spent. All answers come from one pass
(``batch.option_log_probs``); what counts is which of them the policy *consults*:
evaluate reports the mean number of questions and of their text prompts per input.

The posterior is a proper likelihood, so it can become confident and stop:

    log P(c | asked) = log prior(c) + sum_{g asked} w_g * log sum_{o in rule(c, g)} p_g(o)

(``cot-log`` restricted to the asked groups; the group weight is the exponent of
its factor, as in ``cot-log``; the prior is uniform). A normalised *sum* of
probabilities, the article's aggregation, moves too little per answer to ever
be confident. The method's scores are the final log posterior (normalised), so
its probabilities are the posterior itself.

Which question to ask comes from an :class:`AnswerModel`: for every class, the
distribution of each question's answer. The gain of group g is the mutual
information between the class and g's answer under the current posterior,
``H(sum_c pi_c A_g[c]) - sum_c pi_c H(A_g[c])``. Three answer models:

- ``ideal`` (the default, training-free): a class always gets the answer its rule
  names. Every question is assumed reliable, so the gain only measures how evenly a
  question splits the remaining mass, and questions that ask the same thing in
  other words tie: ties go to the group listed first.
- ``labelled``: counted from labelled inputs (mean answer distribution per class,
  classes sharing a rule option pooled, smoothed towards ``ideal``), so unreliable
  questions are worth less and asked later.
- ``unlabelled``: estimated from inputs without labels by expectation-maximisation
  (Dawid and Skene's estimator of annotator confusion, with soft answers), started
  from the posterior of all questions together. Questions that disagree with the
  others come out unreliable; no label is read.

The answer model only decides the order; the update always uses the observed
answer distribution as above. Classifying a batch (at least
:data:`BATCH_CALIBRATION_MIN_PER_CLASS` inputs per class), the method fits the
``unlabelled`` model on that very batch by default (``calibrate_on_batch``; no label
is read); a model given explicitly (``--calibrate DATA``) wins, and a single input
keeps the training-free ``ideal`` one. Collecting and embedding calibration data is
the classifier's job (:mod:`cotembed._adaptive`).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from cotembed.errors import InputError
from cotembed.scoring._answer_model import AnswerModel, fit_answer_model, group_log_likelihood, ideal_answers, normalise_log
from cotembed.scoring._methods import OPTIONS, Batch, ScoringConfig, ScoringMethod
from cotembed.scoring._params import Param

if TYPE_CHECKING:
    from cotembed.system import CompiledSystem

DEFAULT_CONFIDENCE = 0.8
"""Stop when the top class's posterior reaches this. Chosen on the tuning species
(``examples/critters/species_tuning.yaml``, its splits seeded 3101 and 3202), never on the
species the figures are reported on (``benchmarks/bench_adaptive.py`` prints the sweep): the best
mean accuracy with the answer model fitted on the batch, among the values that keep within a
point of asking everything with at most 70 % of the questions (25 % on the redundant system)."""

BATCH_CALIBRATION_MIN_PER_CLASS = 2
"""A batch fits its own answer model only with at least this many inputs per class on average;
smaller batches (a single input) keep the training-free model."""

TIE = 1e-9
"""Gains (nats) this close to the best count as equal, so that equal questions (the same split
of the classes) go to the group listed first whatever the rounding of the matrix product."""

MIN_GAIN = 1e-3
"""Expected gain (nats) below which no remaining question is worth asking (e.g. the classes
left differ in no rule): stop."""

STOP_REASONS = ("confident", "budget", "all asked", "no gain")
"""Why an input stopped: its top class reached the confidence; it used its question budget;
it has asked every question; no remaining question can change its posterior (e.g. the
leading classes have identical rules)."""


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class AdaptiveSettings:
    """The policy's settings (the method's checked parameters)."""

    confidence: float = DEFAULT_CONFIDENCE
    max_questions: int | None = None
    answer_model: AnswerModel | None = None
    """None: the ideal (training-free) model of the system being scored."""

    def model_for(self, compiled: "CompiledSystem") -> AnswerModel:
        if self.answer_model is None:
            return AnswerModel.ideal(compiled)
        self.answer_model.check(compiled)
        return self.answer_model


# -------------------------------------------------------------------- policy
def _entropy_per_group(p: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(R, G) entropy (nats) of each group's block of (R, Q) distributions."""
    safe = np.where(p > 0, p, 1)
    terms = -p * np.log(safe)
    return np.add.reduceat(terms, starts, axis=1)


@dataclass
class PolicyRun:
    """What the policy did for each input of a batch; ``steps`` arrays are (B, S), -1 / NaN past the stop."""

    log_posterior: np.ndarray
    asked: np.ndarray
    """(B, G) bool: the groups each input consulted."""
    order: np.ndarray
    gain: np.ndarray
    """Expected gain (nats) of the group asked at each step."""
    runner_up: np.ndarray
    runner_up_gain: np.ndarray
    leader: np.ndarray
    leader_probability: np.ndarray
    stop: np.ndarray
    """(B,) index into :data:`STOP_REASONS`."""
    final_gains: np.ndarray
    """(B, G) expected gain of each group under the final posterior (-inf for asked ones)."""
    prompts: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def questions(self) -> np.ndarray:
        counts: np.ndarray = self.asked.sum(axis=1)
        return counts


def run_policy(option_log_probs: np.ndarray, compiled: "CompiledSystem", settings: AdaptiveSettings) -> PolicyRun:
    """Ask questions for every input at once (numpy over the batch; one loop step per question)."""
    model = settings.model_for(compiled)
    log_probs = np.asarray(option_log_probs)
    n_rows, n_groups, n_classes = len(log_probs), len(compiled.group_names), compiled.n_classes
    starts = np.asarray(compiled.offsets[:-1])
    sizes = np.diff(np.asarray(compiled.offsets))
    answers = model.answers  # (N, Q)
    answer_entropy = _entropy_per_group(answers, starts)  # (N, G): H(answer | class)
    budget = n_groups if settings.max_questions is None else min(n_groups, int(settings.max_questions))

    log_post = np.full((n_rows, n_classes), -math.log(n_classes))
    asked = np.zeros((n_rows, n_groups), dtype=bool)
    shape = (n_rows, budget)
    order, runner_up = np.full(shape, -1), np.full(shape, -1)
    leader = np.full(shape, -1)
    gain, runner_up_gain, leader_p = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    stop = np.full(n_rows, STOP_REASONS.index("all asked") if budget == n_groups else STOP_REASONS.index("budget"))
    final_gains = np.full((n_rows, n_groups), -np.inf)
    active = np.ones(n_rows, dtype=bool)

    def gains_for(rows: np.ndarray) -> np.ndarray:
        post = np.exp(log_post[rows])
        predicted = post @ answers  # (R, Q): the answer distribution each group is expected to give
        out: np.ndarray = _entropy_per_group(predicted, starts) - post @ answer_entropy
        out[asked[rows]] = -np.inf
        return out

    for step in range(budget):
        rows = np.flatnonzero(active)
        if not len(rows):
            break
        post_max = np.exp(log_post[rows].max(axis=1))
        confident = (post_max >= settings.confidence) & (step > 0)  # at least one question: the prior says nothing
        g_all = gains_for(rows)
        final_gains[rows] = g_all
        best = (g_all >= g_all.max(axis=1, keepdims=True) - TIE).argmax(axis=1)  # first of the best
        best_gain = g_all[np.arange(len(rows)), best]
        no_gain = ~confident & (best_gain <= MIN_GAIN) & (step > 0)
        stop[rows[confident]] = STOP_REASONS.index("confident")
        stop[rows[no_gain]] = STOP_REASONS.index("no gain")
        go = ~(confident | no_gain)
        active[rows[~go]] = False
        rows, best, best_gain, g_all = rows[go], best[go], best_gain[go], g_all[go]
        if not len(rows):
            break
        second = g_all.copy()
        second[np.arange(len(rows)), best] = -np.inf
        second_best = (second >= second.max(axis=1, keepdims=True) - TIE).argmax(axis=1)
        second_gain = second[np.arange(len(rows)), second_best]
        has_second = np.isfinite(second_gain)
        order[rows, step], gain[rows, step] = best, best_gain
        runner_up[rows, step] = np.where(has_second, second_best, -1)
        runner_up_gain[rows, step] = np.where(has_second, second_gain, np.nan)
        asked[rows, best] = True
        for g in np.unique(best):
            picked = rows[best == g]
            log_post[picked] += group_log_likelihood(log_probs[picked], compiled, int(g))
        log_post[rows] = normalise_log(log_post[rows])
        leader[rows, step] = log_post[rows].argmax(axis=1)
        leader_p[rows, step] = np.exp(log_post[rows].max(axis=1))
    # Inputs still active asked everything they could: their stop reason is the default set above,
    # unless the last answer made them confident.
    rows = np.flatnonzero(active)
    if len(rows):
        final_gains[rows] = gains_for(rows)
        done = np.exp(log_post[rows].max(axis=1)) >= settings.confidence
        stop[rows[done]] = STOP_REASONS.index("confident")
    prompts = asked.astype(np.int64) @ sizes
    return PolicyRun(log_post, asked, order, gain, runner_up, runner_up_gain, leader, leader_p, stop, final_gains, prompts)


# -------------------------------------------------------------------- method
def _answer_model_problem(value: Any) -> str | None:
    return None if isinstance(value, AnswerModel) else f"must be an AnswerModel (see fit_answer_model), got {type(value).__name__}"


def _answer_model_report(value: Any) -> Any:
    return {"source": "ideal"} if value is None else value.summary()


class Adaptive(ScoringMethod):
    name = "adaptive"
    description = ("twenty questions: ask the most informative group next under a product-of-groups posterior, "
                   "stop when confident (Q prompts embedded once; fewer consulted per input)")
    needs = (OPTIONS,)
    prompt_symbol = "Q"
    option_prefix = "adaptive_"
    title = "adaptive questioning"
    switch_help = "ask one question at a time, the most informative next, and stop when confident (method adaptive)"
    compare_with = ("cot", "cot-log")
    parameters: ClassVar[tuple[Param, ...]] = (
        Param("confidence", "float", DEFAULT_CONFIDENCE, low=0.0, high=1.0, low_open=True, flag="--confidence", metavar="P",
              help=f"stop once the top class's posterior reaches P, in (0, 1] (default: {DEFAULT_CONFIDENCE:g})"),
        Param("max_questions", "int", None, low=1, high=1_000_000, optional=True, flag="--max-questions", metavar="K",
              help="ask at most K questions per input (default: as many as needed)"),
        Param("answer_model", "object", None, optional=True, check=_answer_model_problem, report=_answer_model_report,
              help="how each question answers for each class (default: fitted on the batch, else training-free)"),
        Param("calibrate_on_batch", "bool", True, flag="--no-batch-calibration",
              help="do not fit the answer model on the classified batch itself (without labels); "
                   "keep the training-free one unless --calibrate gives data"),
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.policy = AdaptiveSettings(self.params["confidence"], self.params["max_questions"], self.params["answer_model"])
        self._runs: "weakref.WeakKeyDictionary[Batch, PolicyRun]" = weakref.WeakKeyDictionary()

    def run(self, batch: Batch) -> PolicyRun:
        """The policy on this batch, computed once and shared by ``score`` and ``extra_stats``."""
        result = self._runs.get(batch)
        if result is None:
            result = run_policy(batch.option_log_probs, batch.compiled, self.policy)
            self._runs[batch] = result
        return result

    def score(self, batch: Batch) -> np.ndarray:
        return self.run(batch).log_posterior.astype(np.float32)

    def probabilities(self, scores: np.ndarray, config: ScoringConfig) -> np.ndarray:
        """The posterior: scores are its normalised logarithm."""
        p = np.exp(scores.astype(np.float64) - scores.max(axis=1, keepdims=True))
        probs: np.ndarray = (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
        return probs

    def terms(self, batch: Batch) -> dict[str, np.ndarray]:
        """Per group: its log-likelihood factor where it was asked (0 where not), and the prior
        with the normalisation, so the parts add up to the score."""
        run = self.run(batch)
        compiled = batch.compiled
        out: dict[str, np.ndarray] = {}
        for g, name in enumerate(compiled.group_names):
            part = np.zeros_like(run.log_posterior)
            rows = np.flatnonzero(run.asked[:, g])
            if len(rows):
                part[rows] = group_log_likelihood(batch.option_log_probs[rows], compiled, g)
            out[name] = part
        out["prior and normalisation"] = run.log_posterior - sum(out.values())
        return out

    def extra_stats(self, batch: Batch) -> dict[str, np.ndarray]:
        """Per input: questions (groups) consulted and the text prompts (their options) they cost."""
        run = self.run(batch)
        return {"questions": run.questions, "prompts": run.prompts}

    def fit(self, batches: Sequence[Batch], labels: np.ndarray | None = None) -> "Adaptive":
        """Fit the answer model on calibration data: counted with labels, by EM without."""
        if not batches:
            raise InputError("adaptive: no inputs to fit the answer model on")
        probs = np.concatenate([b.option_probs for b in batches])
        model = fit_answer_model(probs, batches[0].compiled, labels)
        return type(self)(**{**self.params, "answer_model": model})

    def transductive(self, n_inputs: int, compiled: "CompiledSystem") -> bool:
        return (self.params["answer_model"] is None and bool(self.params["calibrate_on_batch"])
                and n_inputs >= BATCH_CALIBRATION_MIN_PER_CLASS * compiled.n_classes)

    def prepare(self, batches: Sequence[Batch]) -> "Adaptive":
        """The answer model fitted by EM on the batch being classified (no labels), when it is large enough."""
        if not batches or not self.transductive(sum(len(b) for b in batches), batches[0].compiled):
            return self
        probs = np.concatenate([b.option_probs for b in batches])
        from dataclasses import replace

        model = replace(fit_answer_model(probs, batches[0].compiled), source="batch")
        return type(self)(**{**self.params, "answer_model": model})

    def explain(self, batch: Batch, options: Sequence[Sequence[str]]) -> "AdaptiveTrace":
        """The questions asked for the batch's one input, in order, and why."""
        return trace_policy(batch.option_log_probs[0], batch.compiled, self.policy, options)


# ---------------------------------------------------------------- explanation
@dataclass(frozen=True)
class AdaptiveStep:
    group: str
    gain_bits: float
    answer: str
    answer_probability: float
    leader: str
    leader_probability: float
    runner_up: str | None
    runner_up_gain_bits: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "expected_gain_bits": self.gain_bits,
            "runner_up": None if self.runner_up is None else {"group": self.runner_up, "expected_gain_bits": self.runner_up_gain_bits},
            "answer": self.answer,
            "answer_probability": self.answer_probability,
            "leader": self.leader,
            "leader_probability": self.leader_probability,
        }


@dataclass(frozen=True)
class AdaptiveTrace:
    """The questions one input was asked, in order, and why: expected gain, answer, leading class."""

    steps: list[AdaptiveStep]
    not_asked: dict[str, float]
    """Groups left unasked: their expected gain (bits) under the final posterior."""
    prediction: str
    probability: float
    stopped: str
    confidence: float
    max_questions: int | None
    answer_model: dict[str, Any]
    n_groups: int
    n_prompts: int
    prompts_used: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "prediction": self.prediction,
            "probability": self.probability,
            "stopped": self.stopped,
            "questions_asked": len(self.steps),
            "questions_total": self.n_groups,
            "text_prompts_consulted": self.prompts_used,
            "text_prompts_total": self.n_prompts,
            "confidence": self.confidence,
            "max_questions": self.max_questions,
            "answer_model": self.answer_model,
            "steps": [s.to_dict() for s in self.steps],
            "not_asked": [{"group": g, "expected_gain_bits": v} for g, v in self.not_asked.items()],
        }


def _bits(nats: float) -> float:
    return max(0.0, float(nats) / math.log(2))


def trace(option_log_probs: np.ndarray, compiled: "CompiledSystem", config: ScoringConfig,
          options: Sequence[Sequence[str]]) -> AdaptiveTrace:
    """The policy's path for one input under ``config``'s adaptive parameters."""
    return trace_policy(option_log_probs, compiled, config.method("adaptive").policy, options)  # type: ignore[attr-defined]


def trace_policy(option_log_probs: np.ndarray, compiled: "CompiledSystem", settings: AdaptiveSettings,
                 options: Sequence[Sequence[str]]) -> AdaptiveTrace:
    """The policy's path for one input ((Q,) or (1, Q) option log probabilities)."""
    log_probs = np.atleast_2d(np.asarray(option_log_probs))
    if len(log_probs) != 1:
        raise InputError(f"adaptive trace takes one input, got {len(log_probs)}")
    run = run_policy(log_probs, compiled, settings)
    names, classes = compiled.group_names, compiled.class_names
    steps = []
    for s in range(run.order.shape[1]):
        g = int(run.order[0, s])
        if g < 0:
            break
        cols = slice(int(compiled.offsets[g]), int(compiled.offsets[g + 1]))
        answer = int(np.argmax(log_probs[0, cols]))
        r = int(run.runner_up[0, s])
        steps.append(AdaptiveStep(
            group=names[g], gain_bits=_bits(run.gain[0, s]), answer=options[g][answer],
            answer_probability=float(np.exp(log_probs[0, cols][answer])),
            leader=classes[int(run.leader[0, s])], leader_probability=float(run.leader_probability[0, s]),
            runner_up=names[r] if r >= 0 else None, runner_up_gain_bits=_bits(run.runner_up_gain[0, s]) if r >= 0 else None,
        ))
    not_asked = {names[g]: _bits(run.final_gains[0, g]) for g in np.flatnonzero(~run.asked[0])}
    top = int(run.log_posterior[0].argmax())
    model = settings.answer_model
    return AdaptiveTrace(
        steps=steps, not_asked=not_asked, prediction=classes[top], probability=float(np.exp(run.log_posterior[0, top])),
        stopped=STOP_REASONS[int(run.stop[0])], confidence=settings.confidence, max_questions=settings.max_questions,
        answer_model=model.summary(compiled) if model is not None else {"source": "ideal"},
        n_groups=len(names), n_prompts=compiled.n_prompts, prompts_used=int(run.prompts[0]),
    )


__all__ = [
    "BATCH_CALIBRATION_MIN_PER_CLASS",
    "DEFAULT_CONFIDENCE",
    "STOP_REASONS",
    "Adaptive",
    "AdaptiveSettings",
    "AdaptiveStep",
    "AdaptiveTrace",
    "AnswerModel",
    "PolicyRun",
    "fit_answer_model",
    "ideal_answers",
    "run_policy",
    "trace",
    "trace_policy",
]
