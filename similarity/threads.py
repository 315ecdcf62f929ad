"""How many threads a process's numerical libraries use (numpy's BLAS, faiss's OpenMP).

A Celery worker runs beside others on the same cores (the embed worker's LiteRT threads take
them all during an import), and scales by adding processes, so each worker process caps its
own pools: an idle BLAS thread left spinning costs CPU that the other workers need.
"""

from __future__ import annotations

from typing import Any


def limit_math_threads(threads: int) -> list[dict[str, Any]]:
    """Cap every BLAS and OpenMP pool of this process at ``threads``; return what threadpoolctl
    reports of each pool afterwards. faiss is imported first: its OpenMP runtime must be
    loaded for the cap to reach it."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    import faiss  # noqa: F401 - loads libgomp
    import numpy  # noqa: F401 - loads its BLAS
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(limits=threads)
    return list(threadpool_info())
