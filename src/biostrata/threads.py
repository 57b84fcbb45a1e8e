"""How many CPU threads torch and the native libraries under NumPy and scikit-learn (BLAS, OpenMP)
use: the one place biostrata sets it.

``set_cpu_threads(n)`` is for a whole process (a command's ``--threads``, a worker process);
``cpu_threads(n)`` for a block, after which the previous counts come back, so that a library call
leaves no global side effect. ``None`` leaves the libraries' own choice (all cores).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from biostrata.errors import ParameterError

__all__ = ["cpu_threads", "set_cpu_threads"]


def _check(threads: int | None) -> int | None:
    if threads is not None and (isinstance(threads, bool) or int(threads) != threads or threads < 1):
        raise ParameterError("threads", f"threads={threads!r}: give a whole number of CPU threads, at least 1")
    return threads


def set_cpu_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads in torch and the native libraries for the rest of the process."""
    if _check(threads) is None:
        return
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


@contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` CPU threads in torch and the native libraries within the block."""
    if _check(threads) is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(previous)
