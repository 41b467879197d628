"""Alignment runs NumPy's BLAS on one thread.

Alignment is FFTs and long vector operations. Where NumPy hands one of those to its BLAS (a
dot product over a spectrum), OpenBLAS wakes a thread per core, and on a two-core machine the
second one only spins: a 30 s pair with a loopback took 0.81 s of CPU with it and 0.53 s
without, in the same wall time. Training is not affected (torch keeps its own threads, set by
``--threads``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def one_blas_thread(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function`` with NumPy's BLAS limited to one thread (restored afterwards)."""

    @functools.wraps(function)
    def limited(*args: P.args, **kwargs: P.kwargs) -> R:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return limited
