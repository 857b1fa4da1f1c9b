"""The search: propose edits, score them on cached embeddings, keep the best; seeded and bounded.

One round:

1. every chosen proposer offers edits of the *current* system (the run's seeded RNG
   draws at most ``per_round`` of them, spread evenly over the proposers);
2. each edit is applied (one that does not fit is recorded and skipped) and systems
   already scored are skipped (by fingerprint);
3. the new prompts of all candidates are embedded in one batch, then each candidate
   is scored on the training rows and the validation rows;
4. the candidate with the best training score (accuracy, then confidence) becomes
   the current system if it beats it.

The *best* system is the accepted one with the highest validation accuracy (ties:
training accuracy, then the earlier one), so a run that keeps climbing on the
training rows while validation stalls stops at the point where it generalised. The
run ends when the candidate budget, the round limit or the time limit is spent, when
``patience`` rounds in a row bring no new best (a plateau), or when no proposer has
anything new to offer. Everything but the time limit is deterministic given the seed.

Every candidate becomes one history row (JSON lines, written as the run goes, so an
interrupted run keeps its record); :meth:`Search.run` returns a :class:`SearchResult`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import numpy as np

from cotembed.errors import InputError
from cotembed.evaluation._objective import Objective, Score
from cotembed.optimize._edits import Edit
from cotembed.optimize._proposers import PROPOSERS, LLMBudget, ProposalContext, Proposer, proposer_class, proposer_names
from cotembed.optimize.vocabulary import Vocabulary
from cotembed.scoring._threads import single_blas_thread
from cotembed.system import System

CONFIDENCE_STEP = 1e-4
"""At equal training accuracy, a move must raise the mean true-class probability by this much."""


@dataclass(frozen=True)
class SearchSettings:
    """Budget, stopping and proposal settings; all checked on construction."""

    seed: int = 0
    proposers: tuple[str, ...] = ()
    """Empty: every offline proposer (plus the LLM ones when a chat model is given)."""
    max_candidates: int = 2000
    max_rounds: int = 200
    max_seconds: float | None = None
    patience: int = 8
    per_round: int = 96
    llm_requests: int = 10
    llm_every: int = 1

    def __post_init__(self) -> None:
        problems = []
        for name, low in (("max_candidates", 1), ("max_rounds", 1), ("patience", 1), ("per_round", 1), ("llm_requests", 0), ("llm_every", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problems.append(f"{name} must be a whole number >= {low}, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            problems.append(f"seed must be a whole number >= 0, got {self.seed!r}")
        if self.max_seconds is not None and not (isinstance(self.max_seconds, (int, float)) and math.isfinite(self.max_seconds) and self.max_seconds > 0):
            problems.append(f"max_seconds must be a positive finite number, got {self.max_seconds!r}")
        unknown = [p for p in self.proposers if p not in PROPOSERS]
        if unknown:
            problems.append(f"unknown proposer(s) {', '.join(map(repr, unknown))}: choose from {', '.join(PROPOSERS)}")
        if problems:
            raise InputError("search settings: " + "; ".join(problems))


@dataclass
class SearchResult:
    """The start, the best and the last accepted system, with their scores, and the run's record."""

    start: System
    start_score: Score
    best: System
    best_score: Score
    best_index: int
    final: System
    final_score: Score
    history: list[dict[str, Any]]
    stop_reason: str
    rounds: int
    n_candidates: int
    seconds: float
    vocabulary: Vocabulary = field(default_factory=Vocabulary)
    llm_requests: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> list[dict[str, Any]]:
        """The accepted edits from the start to the last accepted system, in order."""
        return [r for r in self.history if r.get("accepted")]

    @property
    def best_path(self) -> list[dict[str, Any]]:
        """The accepted edits that lead to the best system."""
        return [r for r in self.path if r["index"] <= self.best_index]

    def to_dict(self) -> dict[str, Any]:
        def entry(system: System, score: Score) -> dict[str, Any]:
            return {"hash": system.fingerprint, "n_groups": len(system.groups), "n_prompts": system.n_prompts, **score.to_dict()}

        return {
            "start": entry(self.start, self.start_score),
            "best": {**entry(self.best, self.best_score), "index": self.best_index},
            "final": entry(self.final, self.final_score),
            "stop_reason": self.stop_reason,
            "rounds": self.rounds,
            "n_candidates": self.n_candidates,
            "seconds": round(self.seconds, 3),
            "candidates_per_second": round(self.n_candidates / self.seconds, 1) if self.seconds > 0 else None,
            "llm_requests": self.llm_requests,
            "best_path": [{"index": r["index"], "proposer": r["proposer"], "edit": r["description"],
                           "train_accuracy": r["train_accuracy"], "val_accuracy": r["val_accuracy"]} for r in self.best_path],
            "settings": self.settings,
        }


class HistoryWriter:
    """JSON lines, one per candidate, flushed as written; ``None`` path keeps rows in memory only."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._fh: TextIO | None = None
        if self.path is not None:
            try:
                self._fh = open(self.path, "w", encoding="utf-8")
            except OSError as exc:
                raise InputError(f"--history {self.path}: cannot write ({exc.strerror or exc})") from None

    def __call__(self, row: dict[str, Any]) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _selection_key(score: Score) -> tuple[float, ...]:
    """How the best system is chosen: validation accuracy first when there is a validation split, then
    training accuracy; confidence never decides (sharper weights raise it without winning an input),
    and on a tie the earlier, less edited system stays."""
    return (score.train,) if score.val is None else (score.val, score.train)


def _better(new: Score, old: Score) -> bool:
    if new.train != old.train:
        return new.train > old.train
    return new.train_confidence > old.train_confidence + CONFIDENCE_STEP


class Search:
    """Seeded hill-climbing over system edits (see the module docstring).

    ``llm`` (a :class:`~cotembed.authoring._llm.ChatModel`) enables the LLM proposers;
    ``record`` receives every history row (e.g. a :class:`HistoryWriter`); ``progress``
    shows a bar on stderr.
    """

    def __init__(self, objective: Objective, settings: SearchSettings | None = None, *, vocabulary: Vocabulary | None = None,
                 llm: Any = None, modality: str = "image", record: Callable[[dict[str, Any]], None] | None = None,
                 progress: bool = False, log: Callable[[str], None] | None = None):
        self.objective = objective
        self.settings = settings or SearchSettings()
        self.vocabulary = vocabulary or Vocabulary()
        self.llm = llm
        self.modality = modality
        self.record = record or (lambda _row: None)
        self.progress = progress
        self.log = log or (lambda _line: None)
        names = self.settings.proposers or (proposer_names(False) + (proposer_names(True) if llm is not None else ()))
        needing = [n for n in names if proposer_class(n).needs_llm]
        if needing and llm is None:
            raise InputError(f"proposer(s) {', '.join(needing)} need an LLM: configure one (--llm-model) or leave them out")
        self.proposers: list[Proposer] = [proposer_class(n)() for n in names]

    # ------------------------------------------------------------------ run
    def run(self, system: System) -> SearchResult:
        with single_blas_thread():
            return self._run(system)

    def _run(self, system: System) -> SearchResult:
        s = self.settings
        rng = np.random.default_rng(s.seed)
        started = time.perf_counter()
        history: list[dict[str, Any]] = []

        def emit(row: dict[str, Any]) -> None:
            row.setdefault("time_s", round(time.perf_counter() - started, 4))
            history.append(row)
            self.record(row)

        start_score = self.objective.score(system)
        emit({"type": "start", "index": 0, "round": 0, "fingerprint": system.fingerprint, "parent": None, "proposer": None,
              "edit": None, "description": "start", **start_score.to_dict(), "n_prompts": system.n_prompts,
              "accepted": True, "new_best": True, "valid": True})
        seen: dict[str, Score] = {system.fingerprint: start_score}
        current, current_score = system, start_score
        best, best_score, best_index = system, start_score, 0
        budget = LLMBudget(s.llm_requests if self.llm is not None else 0, s.llm_every)
        vocabulary = self.vocabulary
        n_candidates, rounds, stale = 0, 0, 0
        stop = "max-rounds"
        bar = _progress_bar(s.max_candidates, self.progress)
        rows: list[dict[str, Any]] = []  # the round's scored candidates, written once it has decided
        try:
            while rounds < s.max_rounds:
                if n_candidates >= s.max_candidates:
                    stop = "max-candidates"
                    break
                if s.max_seconds is not None and time.perf_counter() - started >= s.max_seconds:
                    stop = "max-seconds"
                    break
                rounds += 1
                ctx = ProposalContext(current, current_score, self.objective, rng, rounds, s.per_round, vocabulary, self.llm,
                                      budget, self.modality, log=self.log)
                offered = self._offers(ctx)
                vocabulary = ctx.vocabulary
                for event in ctx.events:
                    emit({"type": "note", "round": rounds, **event})
                room = min(s.per_round, s.max_candidates - n_candidates)
                candidates = self._apply(offered, current, seen, room, rounds, emit)
                if not candidates:
                    stop = "exhausted"
                    break
                self.objective.prefetch(c[2] for c in candidates)
                rows = []
                round_best: tuple[Score, System, dict[str, Any]] | None = None
                for proposer, edit, candidate in candidates:
                    if s.max_seconds is not None and time.perf_counter() - started >= s.max_seconds:
                        break
                    score = self.objective.score(candidate)
                    seen[candidate.fingerprint] = score
                    n_candidates += 1
                    row = {"type": "candidate", "index": n_candidates, "round": rounds, "fingerprint": candidate.fingerprint,
                           "parent": current.fingerprint, "proposer": proposer, "edit": edit.to_dict(), "description": edit.describe(),
                           **score.to_dict(), "n_prompts": candidate.n_prompts, "accepted": False, "new_best": False, "valid": True,
                           "time_s": round(time.perf_counter() - started, 4)}
                    rows.append(row)
                    if round_best is None or _better(score, round_best[0]):
                        round_best = (score, candidate, row)
                    if bar is not None:
                        bar.update(1)
                improved_best = False
                if round_best is not None and _better(round_best[0], current_score):
                    current_score, current, row = round_best
                    row["accepted"] = True
                    if _selection_key(current_score) > _selection_key(best_score):
                        best, best_score, best_index = current, current_score, row["index"]
                        row["new_best"] = improved_best = True
                for row in rows:  # written once the round has decided, so every line is final
                    history.append(row)
                    self.record(row)
                rows = []
                stale = 0 if improved_best else stale + 1
                if bar is not None:
                    bar.set_postfix_str(_postfix(current_score, best_score), refresh=False)
                if stale >= s.patience:
                    stop = "plateau"
                    break
            else:
                stop = "max-rounds"
        except KeyboardInterrupt:
            stop = "interrupted"
            for row in rows:  # scored before Ctrl-C; none of them was accepted
                history.append(row)
                self.record(row)
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - started
        settings = {"seed": s.seed, "proposers": [p.name for p in self.proposers], "max_candidates": s.max_candidates,
                    "max_rounds": s.max_rounds, "max_seconds": s.max_seconds, "patience": s.patience, "per_round": s.per_round,
                    "llm_requests": s.llm_requests if self.llm is not None else 0, "method": self.objective.method,
                    "temperature": self.objective.base_config.temperature, "n_train": self.objective.n_train,
                    "n_val": len(self.objective.val) if self.objective.val is not None else 0}
        emit({"type": "end", "stop_reason": stop, "rounds": rounds, "n_candidates": n_candidates, "best_index": best_index,
              "best_fingerprint": best.fingerprint, **{f"best_{k}": v for k, v in best_score.to_dict().items()},
              "time_s": round(seconds, 4)})
        return SearchResult(system, start_score, best, best_score, best_index, current, current_score, history, stop, rounds,
                            n_candidates, seconds, vocabulary, budget.used, settings)

    # -------------------------------------------------------------- helpers
    def _offers(self, ctx: ProposalContext) -> list[tuple[str, Edit]]:
        """Every proposer's edits, shuffled per proposer and interleaved, so each gets a fair share of the round."""
        lists: list[list[tuple[str, Edit]]] = []
        for proposer in self.proposers:
            edits = proposer.propose(ctx)
            order: Sequence[int] = ctx.rng.permutation(len(edits)).tolist() if edits else []
            lists.append([(proposer.name, edits[i]) for i in order])
        out: list[tuple[str, Edit]] = []
        for i in range(max((len(x) for x in lists), default=0)):
            out.extend(x[i] for x in lists if i < len(x))
        return out

    def _apply(self, offered: Sequence[tuple[str, Edit]], current: System, seen: dict[str, Score], room: int, round_: int,
               emit: Callable[[dict[str, Any]], None]) -> list[tuple[str, Edit, System]]:
        """Up to ``room`` new candidate systems; edits that do not fit are noted, repeats skipped."""
        out: list[tuple[str, Edit, System]] = []
        fingerprints: set[str] = set()
        for proposer, edit in offered:
            if len(out) >= room:
                break
            try:
                candidate = edit.apply(current)
            except InputError as exc:
                emit({"type": "invalid", "round": round_, "proposer": proposer, "edit": edit.to_dict(), "description": edit.describe(),
                      "valid": False, "error": str(exc).splitlines()[0][:300]})
                continue
            fp = candidate.fingerprint
            if fp in seen or fp in fingerprints:
                continue
            fingerprints.add(fp)
            out.append((proposer, edit, candidate))
        return out


def _postfix(current: Score, best: Score) -> str:
    val = f" val {100 * best.val:.1f}%" if best.val is not None else ""
    return f"train {100 * current.train:.1f}% | best train {100 * best.train:.1f}%{val}"


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="optimize", unit="cand", file=sys.stderr, dynamic_ncols=True, leave=False)


__all__ = ["HistoryWriter", "Search", "SearchResult", "SearchSettings"]
