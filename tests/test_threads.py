"""Alignment runs NumPy's BLAS on one thread, and gives the caller's setting back."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from ampcap.threads import one_blas_thread


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_one_blas_thread_inside_and_the_callers_setting_after() -> None:
    np.dot(np.ones(4), np.ones(4))  # BLAS is loaded

    @one_blas_thread
    def inside(x: float) -> tuple[list[int], float]:
        return _blas_threads(), x * 2

    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        threads, value = inside(1.5)
        after = _blas_threads()
    assert before and all(n == 2 for n in before)
    assert threads == [1] * len(before) and value == 3.0
    assert after == before
