"""Several worker processes on one listening socket (``cotembed serve --workers N``).

At one image per request most of a request's server time is Python (HTTP parsing, JSON,
base64, the image header, the response) on one event loop, which holds the GIL: one process
keeps one core busy with it while the model waits. N processes accept from the same socket
(the kernel spreads connections among them), each with its own event loop, model and
batcher, so the request path runs on several cores at once.

The parent binds the socket and forks the workers *before* any model is loaded (a process
forked after torch has run its thread pools can hang), each worker loads the models,
registers the systems, and reports ready through a pipe; the parent prints one ready line
once all have. SIGTERM to the parent is passed on to every worker, which finish the
requests in flight as a single server does; SIGINT from a terminal reaches the workers
directly (same process group), so the parent only waits for them.

What each worker keeps for itself: the loaded models, the registered systems and their
scorers, the labelled examples and conformal calibration given at start (``--examples``,
``--conformal-data``: every worker computes the same from the shared embedding cache), and
the ``/metrics`` counters (each worker reports its own). The embedding cache is one SQLite
file in WAL mode with a busy timeout, which several processes read and write safely.
Registering systems or examples over HTTP would reach one worker only, so with more than
one worker those routes answer 409 (see :attr:`ServeSettings.workers`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from cotembed.errors import CotembedError


def threads_per_worker(workers: int) -> int:
    """The model's threads in each worker: the cores shared out, so N workers do not oversubscribe them."""
    return max(1, (os.cpu_count() or 1) // workers)


def _limit_threads(threads: int) -> None:
    """Before a model loads: torch's and ONNX Runtime's intra-op pools to ``threads``."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    if "torch" in sys.modules or _importable("torch"):
        import torch

        torch.set_num_threads(threads)


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def run_workers(workers: int, sock: socket.socket, serve_one: Callable[[Callable[[dict[str, Any]], None]], None],
                on_ready: Callable[[dict[str, Any]], None]) -> int:
    """Fork ``workers`` processes that each call ``serve_one(ready)`` (load, call ``ready(info)``
    once listening is possible, serve until signalled); ``on_ready(info of the first)`` runs in the
    parent when all are ready. Returns the exit code (0 when every worker stopped cleanly)."""
    children: dict[int, int] = {}  # pid -> read end of its ready pipe
    threads = threads_per_worker(workers)
    for _ in range(workers):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_end)
            code = 1
            try:
                _limit_threads(threads)

                def ready(info: dict[str, Any], fd: int = write_end) -> None:
                    os.write(fd, (json.dumps(info) + "\n").encode())
                    os.close(fd)

                serve_one(ready)
                code = 0
            except BaseException as exc:  # reported, then the worker exits
                print(f"cotembed serve: worker {os.getpid()} failed: {exc}", file=sys.stderr, flush=True)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)  # never run the parent's cleanup in a forked worker
        os.close(write_end)
        children[pid] = read_end
    sock.close()  # the workers hold it

    infos: list[dict[str, Any]] = []
    for read_end in children.values():
        with os.fdopen(read_end) as pipe:
            line = pipe.readline()
        if not line:
            _signal_all(children, signal.SIGTERM)
            _wait_all(children)
            raise CotembedError("a worker failed while starting; see the log above")
        infos.append(json.loads(line))
    on_ready(infos[0])

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, lambda signum, frame: _signal_all(children, signal.SIGTERM))
    signal.signal(signal.SIGINT, lambda signum, frame: None)  # the terminal sends it to the workers too
    try:
        codes = _wait_all(children)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if all(code == 0 for code in codes) else 1


def _signal_all(children: dict[int, int], sig: int) -> None:
    for pid in children:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_all(children: dict[int, int]) -> list[int]:
    codes = []
    for pid in children:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                status = 0
                break
        codes.append(os.waitstatus_to_exitcode(status))
    return codes


__all__ = ["run_workers", "threads_per_worker"]
