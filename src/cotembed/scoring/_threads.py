"""Thread settings for the small matrix products of scoring many candidate systems."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def single_blas_thread() -> Iterator[bool]:
    """One BLAS thread while candidates are scored; yields whether the limit could be set.

    A candidate's products are small (rows x Q by Q x N): waking a second BLAS thread costs
    more than the product, and on a busy machine the wait for it to be scheduled is measured in
    milliseconds (60 vs 250 candidates per second on critters). Uses ``threadpoolctl`` when it is
    installed (a dependency of cotembed); otherwise the BLAS keeps its own setting.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    with threadpool_limits(1, user_api="blas"):
        yield True


_blas_controller: Any = None


def _blas() -> Any:
    """threadpoolctl's controller of the BLAS libraries (built once: finding them costs ~1 ms), or None."""
    global _blas_controller
    if _blas_controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _blas_controller = False
        else:
            _blas_controller = ThreadpoolController().select(user_api="blas")
    return _blas_controller or None


def blas_threads() -> int:
    """The threads the BLAS would use for a product now (1 when unknown)."""
    controller = _blas()
    if controller is None or not controller.lib_controllers:
        return 1
    return max(1, min(int(lib.num_threads) for lib in controller.lib_controllers))


@contextmanager
def blas_thread_limit(threads: int) -> Iterator[None]:
    """At most ``threads`` BLAS threads inside the block (process-wide, as BLAS settings are)."""
    controller = _blas()
    if controller is None:
        yield
        return
    with controller.limit(limits=threads):
        yield
