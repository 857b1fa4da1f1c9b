"""Scoring of concurrent requests in one call, off the event loop.

At one image per request, scoring one row costs about what scoring fifty does: the
method's fixed numpy and Python work (group softmaxes, rule tables) dominates. When a model
batch finishes, every request in it wakes in the same few event-loop turns and scores its
own rows; :class:`ScoreBatcher` gathers those that share a scorer and settings for a few
turns, scores their rows together on its own thread (the event loop keeps parsing and
answering meanwhile) and hands each request its slice. Scores are row by row, so a
request gets exactly what it would have alone; a request whose scorer is its own (refined
on its batch) simply forms a group of one.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cotembed.scoring import Scorer
from cotembed.scoring._posteriors import Scored, score_embeddings

GATHER_TURNS = 4
"""Event-loop turns a group stays open: a request woken with others reaches its scoring within about three."""


@dataclass
class _Group:
    scorer: Scorer
    parts: list[np.ndarray] = field(default_factory=list)
    task: asyncio.Task[Scored] | None = None


class ScoreBatcher:
    """``await score(...)``: :func:`score_embeddings` of a request's rows, computed with those of concurrent requests."""

    def __init__(self, executor: Executor | None = None):
        self.executor = executor
        self._open: dict[tuple[Any, ...], _Group] = {}
        self.calls = 0
        """Scoring calls made (fewer than the requests scored when groups form)."""

    async def score(self, scorer: Scorer, x: np.ndarray, method: str, fit_score: str, support: bool) -> Scored:
        key = (id(scorer), method, fit_score, support)
        group = self._open.get(key)
        if group is None:
            group = self._open[key] = _Group(scorer)
            group.task = asyncio.get_running_loop().create_task(self._flush(key, group, method, fit_score, support))
        start = sum(len(p) for p in group.parts)
        group.parts.append(x)
        assert group.task is not None
        scored = await asyncio.shield(group.task)  # a request that goes away leaves the others their scores
        rows = slice(start, start + len(x))
        return Scored(scored.scores[rows], scored.probabilities[rows], None if scored.fit is None else scored.fit[rows],
                      None if scored.support is None else scored.support[rows])

    async def _flush(self, key: tuple[Any, ...], group: _Group, method: str, fit_score: str, support: bool) -> Scored:
        try:
            for _ in range(GATHER_TURNS):
                await asyncio.sleep(0)
        finally:
            del self._open[key]
        x = group.parts[0] if len(group.parts) == 1 else np.concatenate(group.parts)
        self.calls += 1
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, score_embeddings, group.scorer, x, method, fit_score, support)


__all__ = ["GATHER_TURNS", "ScoreBatcher"]
