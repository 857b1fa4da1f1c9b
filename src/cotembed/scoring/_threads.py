"""Thread settings for the small matrix products of scoring many candidate systems."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


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
