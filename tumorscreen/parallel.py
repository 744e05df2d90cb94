"""One ordered, progress-reporting parallel map used by every per-image stage."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from multiprocessing import get_context
from typing import Any, TypeVar

from tqdm import tqdm

Item = TypeVar("Item")


def resolve_workers(workers: int) -> int:
    """``workers`` processes, where 0 means one per available core."""
    if workers > 0:
        return workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def parallel_map(
    function: Callable[[Item], Any], items: Sequence[Item], workers: int, desc: str
) -> list[Any]:
    """``[function(x) for x in items]`` in input order, over a process pool when workers > 1.

    ``function`` must be picklable (a module-level function or a functools.partial of one).
    """
    count = resolve_workers(workers)
    progress: Iterable[Any]
    if count == 1 or len(items) < 2:
        progress = map(function, items)
        return list(tqdm(progress, total=len(items), desc=desc, mininterval=2, disable=None))
    chunksize = max(1, min(64, len(items) // (count * 8)))
    # fork on POSIX: workers inherit the imported modules and start in milliseconds
    with get_context("fork" if os.name == "posix" else "spawn").Pool(count) as pool:
        progress = pool.imap(function, items, chunksize=chunksize)
        return list(tqdm(progress, total=len(items), desc=desc, mininterval=2, disable=None))
