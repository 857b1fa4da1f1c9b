"""Dynamic batching: inputs of concurrent requests go through the model together.

Each request hands its inputs to :meth:`DynamicBatcher.submit` and awaits one future
per input. A single worker task per model takes the first waiting input, then keeps
collecting until it has ``max_batch`` inputs or ``max_wait_ms`` have passed, runs the
batch in the model's own thread (the event loop keeps serving meanwhile) and resolves
the futures. While the model is busy, arrivals pile up, so under load batches fill
without waiting. The wait for more is only worth it while other requests are on their
way (read, parsed, their images checked): :class:`Arrivals` counts them, and when none
is, the batch runs at once, so a lone request never waits ``max_wait_ms`` for nobody.

The queue is bounded: a request whose inputs would take it past ``max_queue`` is refused
at once (:class:`QueueFull`, HTTP 429) instead of growing memory and latency without
limit. A batch the model fails on is split and rerun (:meth:`DynamicBatcher._run`),
so one bad input fails only its own request. :meth:`close` refuses new work and finishes everything already admitted, so a
graceful shutdown loses no request.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from cotembed.errors import BatcherClosed, InputFailed, QueueFull
from cotembed.serve._settings import Batching

Item = tuple[str, Any]
"""(kind, data): ``("image", bytes)`` or ``("text", str)``."""





class Arrivals:
    """Requests that came in and have not yet handed their inputs to a batcher, nor finished.

    The ASGI layer calls :meth:`enter` when a request starts and :meth:`leave` when it ends;
    :meth:`DynamicBatcher.submit` calls :meth:`submitted` from inside the request. A count of
    zero means no input can arrive soon, so a batch need not wait for one.
    """

    _current: contextvars.ContextVar[list[Arrivals | None] | None] = contextvars.ContextVar("cotembed_arrival", default=None)
    """The request's own cell: the counter it is counted in, until it has submitted or left."""

    def __init__(self) -> None:
        self.count = 0

    def enter(self) -> contextvars.Token[list[Arrivals | None] | None]:
        self.count += 1
        return self._current.set([self])

    def submitted(self) -> None:
        """The current request has queued its inputs (once per request; later calls do nothing)."""
        arrival = self._current.get()
        if arrival is not None and arrival[0] is self:
            arrival[0] = None
            self.count -= 1

    def leave(self, token: contextvars.Token[list[Arrivals | None] | None]) -> None:
        self.submitted()
        self._current.reset(token)


@dataclass
class _Job:
    item: Item
    future: asyncio.Future[Any]


class DynamicBatcher:
    """Collects inputs into batches for ``run_batch(items) -> results`` (one result per
    item, in order), which runs on ``executor``; ``on_batch(size, seconds)`` is told of each."""

    def __init__(self, run_batch: Callable[[list[Item]], list[Any]], executor: Executor, settings: Batching,
                 on_batch: Callable[[int, float], None] | None = None, arrivals: Arrivals | None = None):
        self.run_batch = run_batch
        self.arrivals = arrivals
        """Requests on their way; without it, every batch waits up to ``max_wait_ms`` for more."""
        self.executor = executor
        self.max_batch = settings.max_batch
        self.max_wait_s = settings.max_wait_ms / 1000.0
        self.max_queue = settings.max_queue
        self.on_batch = on_batch
        self.pending = 0
        """Inputs admitted and not yet answered (waiting or in the model)."""
        self.batches = 0
        self._jobs: deque[_Job] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def waiting(self) -> int:
        """Inputs in the queue, not yet in a batch."""
        return len(self._jobs)

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._work(), name="cotembed-batcher")

    async def submit(self, items: Sequence[Item]) -> list[Any]:
        """Results for ``items`` once their batches ran; all are admitted or none. An input
        that failed on its own raises :class:`InputFailed` with its position."""
        if self._closing or self._task is None or self._wake is None:
            raise BatcherClosed("the service is shutting down")
        if self.pending + len(items) > self.max_queue:
            raise QueueFull(self.pending, len(items), self.max_queue)
        loop = asyncio.get_running_loop()
        jobs = [_Job(item, loop.create_future()) for item in items]
        self.pending += len(jobs)
        self._jobs.extend(jobs)
        if self.arrivals is not None:
            self.arrivals.submitted()
        self._wake.set()
        try:
            results = await asyncio.gather(*(job.future for job in jobs), return_exceptions=True)
            for position, result in enumerate(results):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                if isinstance(result, BaseException):
                    raise InputFailed(position, result) from result
            return list(results)
        finally:
            self.pending -= len(jobs)
            for job in jobs:  # a caller that went away: its inputs are skipped, not encoded
                if not job.future.done():
                    job.future.cancel()

    async def close(self) -> None:
        """Take no new inputs, finish the admitted ones, stop the worker."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task

    async def _collect(self) -> list[_Job] | None:
        assert self._wake is not None
        while not self._jobs:
            if self._closing:
                return None
            self._wake.clear()
            await self._wake.wait()
        loop = asyncio.get_running_loop()
        batch = [self._jobs.popleft()]
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            if self._jobs:
                batch.append(self._jobs.popleft())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing or (self.arrivals is not None and self.arrivals.count <= 0):
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return batch

    async def _work(self) -> None:
        while (batch := await self._collect()) is not None:
            jobs = [job for job in batch if not job.future.done()]
            if jobs:
                await self._run(jobs)

    async def _run(self, jobs: list[_Job]) -> None:
        """Run a batch; if it fails, run its halves apart, down to single inputs, so an
        input the model cannot take fails alone and its neighbours still get answers."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            results = await loop.run_in_executor(self.executor, self.run_batch, [job.item for job in jobs])
        except Exception as exc:
            if len(jobs) == 1:
                if not jobs[0].future.done():
                    jobs[0].future.set_exception(exc)
                return
            middle = len(jobs) // 2
            for half in (jobs[:middle], jobs[middle:]):
                live = [job for job in half if not job.future.done()]
                if live:
                    await self._run(live)
            return
        self.batches += 1
        if self.on_batch is not None:
            self.on_batch(len(jobs), loop.time() - start)
        for job, result in zip(jobs, results):
            if not job.future.done():
                job.future.set_result(result)
