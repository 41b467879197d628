"""ampcap's numerical work runs on one BLAS thread.

Alignment, splitting and rendering are FFTs and long vector operations. Where NumPy hands one
of those to its BLAS (a dot product over a spectrum), OpenBLAS wakes a thread per core, and on
a two-core machine they spin for as long as they compute: an alignment used 0.85 s of CPU for
0.5 s of work, and the same wall time either way. Training is not affected (torch keeps its own
threads, set by ``--threads``).
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
