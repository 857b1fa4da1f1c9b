"""The optimisation as the article names it: DSPy (and GEPA) with cotembed's accuracy as the metric.

Two ways, both in the ``dspy`` extra (``pip install 'cotembed[dspy]'``):

* :func:`run_dspy`: a DSPy program, :class:`SystemReviser`, whose LM reads a system (JSON)
  and its diagnostics (per-question accuracy, costliest confusions on the training rows)
  and writes a revised system. It is compiled with a DSPy optimiser (``dspy.GEPA`` by
  default, whose metric returns the training accuracy of the proposed system together
  with its confusions as feedback; or ``dspy.BootstrapFewShot``), then applied round
  after round to its own best system.
* :func:`run_gepa`: GEPA's ``optimize_anything`` over the system's YAML text, the
  evaluator scoring it on cached embeddings and returning the confusions as side
  information for GEPA's reflection LM.

Every system an LM proposes is validated (same classes, every rule valid) and scored
like the search's candidates: training accuracy steers, validation accuracy picks the
best, and each one is a history row. An answer that is not a valid system scores 0 and
tells the LM why. The LM is any ``dspy.BaseLM`` (``dspy.LM("openai/gpt-4o-mini")``,
``dspy.utils.DummyLM`` in tests) or a :class:`~cotembed.authoring._llm.ChatModel`, which
is wrapped as a DSPy engine so requests go through cotembed's own client (its settings,
retries and errors); GEPA's reflection LM is the same model.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Any, Callable, Iterator, Sequence

from cotembed.errors import InputError, MissingDependencyError, SystemValidationError
from cotembed.evaluation._objective import Objective, Score
from cotembed.optimize._llm_proposers import describe_diagnostics, system_json, training_diagnostics
from cotembed.optimize._search import SearchResult, SearchSettings, _better, _selection_key
from cotembed.scoring._threads import single_blas_thread
from cotembed.system import GROUP_KEYS, RULE_KEYS, System, parse_system_text

DSPY_OPTIMIZERS = ("gepa", "bootstrap", "none")

TASK = (
    "You improve classification systems for a frozen image-text embedding model. A system splits the decision into "
    "attribute questions: each group has a prompt template with exactly one {} and short options that fill it; each "
    "class has a rule naming the option (or options) it matches in every group. The model compares the input with "
    "every filled-in prompt, each group's similarities become probabilities, and a class scores the weighted sum of "
    "the probabilities of its options. Revise the system so that more inputs are classified right: reword options the "
    "model misreads (plain, common words often work best), fix rules the model's answers contradict, drop questions "
    "that only add noise. Keep every class name exactly as it is and give every class a rule for every group."
)


def _dspy() -> Any:
    try:
        import dspy
    except ImportError as exc:
        raise MissingDependencyError("dspy", "dspy") from exc
    return dspy


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """DSPy's and GEPA's own chatter (INFO logs, prints) stays off stdout, where the CLI writes its JSON."""
    loggers = [logging.getLogger(name) for name in ("dspy", "gepa")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class _LogToDebug:
    """GEPA's logger protocol (``log(message)``), sent to Python logging at DEBUG level."""

    def log(self, message: str) -> None:
        logging.getLogger("cotembed.optimize.gepa").debug(message)


# ------------------------------------------------------------------ tracker
class Tracker:
    """Scores every system an LM proposes, once per fingerprint, and keeps the history and the best.

    ``accepted`` marks a proposal that beat every earlier one on the training rows (the
    system the next round revises), ``new_best`` one that also raised the selection key
    (validation accuracy, then training accuracy), as in :class:`~cotembed.optimize._search.Search`.
    """

    def __init__(self, objective: Objective, start: System, record: Callable[[dict[str, Any]], None] | None = None,
                 max_candidates: int | None = None):
        self.objective = objective
        self.record = record or (lambda _row: None)
        self.started = time.perf_counter()
        self.history: list[dict[str, Any]] = []
        self.scores: dict[str, Score] = {}
        self.max_candidates = max_candidates
        self.start = start
        self.start_score = objective.score(start)
        self.scores[start.fingerprint] = self.start_score
        self.current, self.current_score = start, self.start_score
        self.best, self.best_score, self.best_index = start, self.start_score, 0
        self.n_candidates = 0
        self.round = 0
        self._emit({"type": "start", "index": 0, "round": 0, "fingerprint": start.fingerprint, "parent": None, "proposer": None,
                    "edit": None, "description": "start", **self.start_score.to_dict(), "n_prompts": start.n_prompts,
                    "accepted": True, "new_best": True, "valid": True})

    def _emit(self, row: dict[str, Any]) -> None:
        row.setdefault("time_s", round(time.perf_counter() - self.started, 4))
        self.history.append(row)
        self.record(row)

    def parse(self, text: str) -> tuple[System | None, list[str]]:
        """A proposed system (YAML or JSON text as it is, or fenced or embedded in prose) checked against the classes."""
        from cotembed.authoring._drafting import extract_system, review_draft
        from cotembed.errors import DraftParseError

        try:
            data = parse_system_text(str(text), "proposed system")
        except SystemValidationError:
            data = None
        if not (isinstance(data, dict) and any(k in data for k in (*GROUP_KEYS, *RULE_KEYS))):
            try:
                data = extract_system(str(text))
            except DraftParseError as exc:
                return None, [f"the answer could not be read as a system: {exc.reason}"]
        review = review_draft(data, self.start.class_names, "proposed system")
        return review.system, list(review.problems)

    def propose(self, text: str, proposer: str) -> tuple[Score | None, System | None, list[str]]:
        """Parse, validate and score one proposal; invalid ones become ``invalid`` history rows."""
        system, problems = self.parse(text)
        if system is None:
            self._emit({"type": "invalid", "round": self.round, "proposer": proposer, "edit": None,
                        "description": "invalid proposal", "valid": False, "error": "; ".join(problems)[:500]})
            return None, None, problems
        return self.add(system, proposer), system, []

    def add(self, system: System, proposer: str, note: str = "LLM revision") -> Score:
        known = self.scores.get(system.fingerprint)
        if known is not None:
            return known
        if self.max_candidates is not None and self.n_candidates >= self.max_candidates:
            raise _BudgetSpent
        score = self.objective.score(system)
        self.scores[system.fingerprint] = score
        self.n_candidates += 1
        row = {"type": "candidate", "index": self.n_candidates, "round": self.round, "fingerprint": system.fingerprint,
               "parent": self.current.fingerprint, "proposer": proposer,
               "edit": {"kind": "replace-system", "system": system.to_dict(), "note": note}, "description": f"{proposer}: {note}",
               **score.to_dict(), "n_prompts": system.n_prompts, "accepted": False, "new_best": False, "valid": True}
        if _better(score, self.current_score):
            self.current, self.current_score = system, score
            row["accepted"] = True
            if _selection_key(score) > _selection_key(self.best_score):
                self.best, self.best_score, self.best_index = system, score, self.n_candidates
                row["new_best"] = True
        self._emit(row)
        return score

    def feedback(self, system: System | None, problems: Sequence[str]) -> str:
        """What the LM is told about a proposal: its problems, or how the model answers it (training rows only)."""
        if system is None:
            return "The proposal is not a valid system:\n" + "\n".join(f"- {p}" for p in problems)
        return describe_diagnostics(training_diagnostics(self.objective, system))

    def result(self, stop_reason: str, rounds: int, settings: dict[str, Any], llm_requests: int = 0) -> SearchResult:
        seconds = time.perf_counter() - self.started
        self._emit({"type": "end", "stop_reason": stop_reason, "rounds": rounds, "n_candidates": self.n_candidates,
                    "best_index": self.best_index, "best_fingerprint": self.best.fingerprint,
                    **{f"best_{k}": v for k, v in self.best_score.to_dict().items()}, "time_s": round(seconds, 4)})
        return SearchResult(self.start, self.start_score, self.best, self.best_score, self.best_index, self.current, self.current_score,
                            self.history, stop_reason, rounds, self.n_candidates, seconds, llm_requests=llm_requests, settings=settings)


class _BudgetSpent(Exception):
    """The candidate budget is spent: the optimiser's run ends with what it found."""


# -------------------------------------------------------------- DSPy program
def make_program(reasoning: bool = False) -> Any:
    """A fresh :class:`SystemReviser` (a ``dspy.Module``), built lazily so the core never imports DSPy."""
    return _classes()[1](reasoning)


_CLASSES: tuple[Any, Any] | None = None


def _classes() -> tuple[Any, Any]:
    """(ReviseSystem signature, SystemReviser module), defined on first use."""
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES
    dspy = _dspy()

    class ReviseSystem(dspy.Signature):  # type: ignore[name-defined,misc]
        system: str = dspy.InputField(desc="the current classification system, as JSON")
        diagnostics: str = dspy.InputField(desc="how the frozen model answers it on labelled training inputs")
        revised_system: str = dspy.OutputField(desc="the whole revised system as one JSON object (groups and rules)")

    ReviseSystem = ReviseSystem.with_instructions(TASK)  # type: ignore[misc]

    class SystemReviser(dspy.Module):  # type: ignore[name-defined,misc]
        """system + diagnostics -> revised system (one predictor, ``revise``)."""

        def __init__(self, reasoning: bool = False):
            super().__init__()
            self.revise = (dspy.ChainOfThought if reasoning else dspy.Predict)(ReviseSystem)

        def forward(self, system: str, diagnostics: str) -> Any:
            return self.revise(system=system, diagnostics=diagnostics)

    _CLASSES = (ReviseSystem, SystemReviser)
    return _CLASSES


class ChatModelEngine:
    """A DSPy engine (``complete(Request) -> Response``) over a cotembed :class:`~cotembed.authoring._llm.ChatModel`."""

    def __init__(self, chat: Any):
        self.chat = chat

    def complete(self, request: Any) -> Any:
        from dspy.lm15 import Message, Response, TextPart, Usage

        messages: list[dict[str, str]] = []
        if request.system is not None:
            system = request.system if isinstance(request.system, str) else "".join(getattr(p, "text", "") for p in request.system)
            messages.append({"role": "system", "content": system})
        messages += [{"role": m.role, "content": m.text or ""} for m in request.messages]
        reply = self.chat.complete(messages)
        usage = reply.usage or {}
        return Response(id=None, model=reply.model or self.chat.settings.model, message=Message.assistant([TextPart(reply.content)]),
                        finish_reason="length" if reply.truncated else "stop",
                        usage=Usage(input_tokens=int(usage.get("prompt_tokens", 0) or 0),
                                    output_tokens=int(usage.get("completion_tokens", 0) or 0),
                                    total_tokens=int(usage.get("total_tokens", 0) or 0)))

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass


def as_dspy_lm(llm: Any) -> Any:
    """A ``dspy.BaseLM`` as it is; a cotembed ChatModel wrapped (no response cache: each proposal is new)."""
    dspy = _dspy()
    if isinstance(llm, dspy.BaseLM):
        return llm
    if llm is None or not hasattr(llm, "complete"):
        raise InputError("the DSPy engine needs an LLM: pass --llm-model NAME (any OpenAI-compatible endpoint), or a dspy.LM")
    return dspy.LM(f"openai/{llm.settings.model}", engine=ChatModelEngine(llm), cache=False)


def _example(tracker: Tracker, system: System) -> Any:
    dspy = _dspy()
    return dspy.Example(system=system_json(system), diagnostics=tracker.feedback(system, ())).with_inputs("system", "diagnostics")


def run_dspy(start: System, objective: Objective, llm: Any, *, settings: SearchSettings | None = None, optimizer: str = "gepa",
             reasoning: bool = False, record: Callable[[dict[str, Any]], None] | None = None,
             log: Callable[[str], None] | None = None) -> SearchResult:
    """Compile :class:`SystemReviser` with ``optimizer`` (metric: the proposal's training accuracy, feedback: its
    confusions), then let the compiled program revise its own best system for up to ``settings.max_rounds`` rounds.

    ``settings.llm_requests`` bounds the optimiser's metric calls (one program call each, plus GEPA's reflection
    calls), ``settings.max_candidates`` the systems scored, ``settings.patience`` the rounds without a new best.
    """
    dspy = _dspy()
    if optimizer not in DSPY_OPTIMIZERS:
        raise InputError(f"unknown DSPy optimiser {optimizer!r}: choose from {', '.join(DSPY_OPTIMIZERS)}")
    s = settings or SearchSettings()
    say = log or (lambda _line: None)
    lm = as_dspy_lm(llm)
    with single_blas_thread(), _quiet_libraries():
        tracker = Tracker(objective, start, record, s.max_candidates)
        program = make_program(reasoning)
        stop = "max-rounds"

        def score_of(pred: Any, proposer: str) -> tuple[float, str]:
            text = getattr(pred, "revised_system", None) or ""
            score, system, problems = tracker.propose(text, proposer)
            return (score.train if score is not None else 0.0), tracker.feedback(system, problems)

        def gepa_metric(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
            value, feedback = score_of(pred, "dspy-compile")
            return dspy.Prediction(score=value, feedback=feedback)

        def bootstrap_metric(gold: Any, pred: Any, trace: Any = None) -> Any:
            value, _ = score_of(pred, "dspy-compile")
            return value > tracker.start_score.train if trace is not None else value

        trainset = [_example(tracker, start)]
        budget = max(2, s.llm_requests)
        try:
            with dspy.context(lm=lm):
                if optimizer == "gepa":
                    say(f"compiling the reviser with dspy.GEPA ({budget} metric calls)")
                    compiler = dspy.GEPA(metric=gepa_metric, max_metric_calls=budget, reflection_lm=lm, reflection_minibatch_size=1,
                                         candidate_selection_strategy="current_best", use_merge=False, num_threads=1,
                                         seed=s.seed, skip_perfect_score=False, track_stats=False)
                    program = compiler.compile(program, trainset=trainset, valset=trainset)
                elif optimizer == "bootstrap":
                    say("compiling the reviser with dspy.BootstrapFewShot")
                    compiler = dspy.BootstrapFewShot(metric=bootstrap_metric, max_bootstrapped_demos=1, max_labeled_demos=0, max_rounds=1)
                    program = compiler.compile(program, trainset=trainset)
                stale = 0
                rounds = 0
                for rounds in range(1, s.max_rounds + 1):
                    tracker.round = rounds
                    best_before = tracker.best_index
                    say(f"round {rounds}: revising the system (train {100 * tracker.current_score.train:.1f}%)")
                    pred = program(system=system_json(tracker.current), diagnostics=tracker.feedback(tracker.current, ()))
                    score_of(pred, "dspy")
                    stale = 0 if tracker.best_index != best_before else stale + 1
                    if stale >= s.patience:
                        stop = "plateau"
                        break
        except _BudgetSpent:
            stop = "max-candidates"
        except KeyboardInterrupt:
            stop = "interrupted"
    return tracker.result(stop, tracker.round, {"engine": "dspy", "optimizer": optimizer, "seed": s.seed, "max_rounds": s.max_rounds,
                                                "patience": s.patience, "metric_calls": budget, "proposers": [f"dspy-{optimizer}"]},
                          llm_requests=len(getattr(lm, "history", ())))


# ---------------------------------------------------------------------- GEPA
GEPA_OBJECTIVE = "Maximise the share of inputs the frozen embedding model classifies right with this system. " + TASK
GEPA_BACKGROUND = ("The candidate is a system in YAML: `groups` (each with `prompt` containing one {} and `options`) and `rules` "
                   "(class -> group -> option text, or a list of option texts). Answer with the whole system.")


def reflection_callable(llm: Any) -> Callable[[Any], str]:
    """GEPA's ``LanguageModel`` (prompt or messages -> text) over a cotembed ChatModel; callables pass through."""
    if llm is None:
        raise InputError("the GEPA engine needs an LLM: pass --llm-model NAME (any OpenAI-compatible endpoint)")
    if not hasattr(llm, "complete"):
        if callable(llm):
            return llm  # type: ignore[no-any-return]
        raise InputError(f"expected a chat model or a callable LM, got {type(llm).__name__}")

    def call(prompt: Any) -> str:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        return str(llm.complete(messages).content)

    return call


def run_gepa(start: System, objective: Objective, llm: Any, *, settings: SearchSettings | None = None,
             record: Callable[[dict[str, Any]], None] | None = None, log: Callable[[str], None] | None = None) -> SearchResult:
    """GEPA's ``optimize_anything`` over the system's YAML text; the evaluator is cotembed's training accuracy
    and its side information the proposal's problems or its confusions. ``settings.llm_requests`` bounds
    GEPA's metric calls."""
    try:
        from gepa.optimize_anything import EngineConfig, GEPAConfig, ReflectionConfig, TrackingConfig, optimize_anything
    except ImportError as exc:
        raise MissingDependencyError("gepa", "dspy") from exc
    from cotembed.authoring.build import render_system

    s = settings or SearchSettings()
    say = log or (lambda _line: None)
    reflect_once = reflection_callable(llm)
    calls = [0]

    def reflect(prompt: Any) -> str:
        calls[0] += 1
        return reflect_once(prompt)

    stop = "max-metric-calls"
    budget = max(2, s.llm_requests)
    with single_blas_thread(), _quiet_libraries():
        tracker = Tracker(objective, start, record, s.max_candidates)

        def evaluate(candidate: str) -> tuple[float, dict[str, Any]]:
            tracker.round += 1
            try:
                score, system, problems = tracker.propose(candidate, "gepa")
            except _BudgetSpent:
                return 0.0, {"problems": "the candidate budget is spent"}
            if score is None:
                return 0.0, {"problems": "\n".join(problems)}
            return score.train, {"training accuracy": f"{100 * score.train:.1f}%", "diagnostics": tracker.feedback(system, ())}

        say(f"running GEPA optimize_anything ({budget} metric calls)")
        config = GEPAConfig(engine=EngineConfig(max_metric_calls=budget, seed=s.seed, parallel=False, display_progress_bar=False,
                                                raise_on_exception=False, cache_evaluation=False),
                            reflection=ReflectionConfig(reflection_lm=reflect, reflection_minibatch_size=1),
                            tracking=TrackingConfig(logger=_LogToDebug()))
        try:
            optimize_anything(seed_candidate=render_system(start, ".yaml"), evaluator=evaluate, objective=GEPA_OBJECTIVE,
                              background=GEPA_BACKGROUND, config=config)
        except KeyboardInterrupt:
            stop = "interrupted"
    return tracker.result(stop, tracker.round, {"engine": "gepa", "seed": s.seed, "metric_calls": budget, "proposers": ["gepa"]},
                          llm_requests=calls[0])


__all__ = ["ChatModelEngine", "DSPY_OPTIMIZERS", "Tracker", "as_dspy_lm", "make_program", "reflection_callable", "run_dspy", "run_gepa"]
