"""Host threads for bioplaus's own array work on the CPU (im2col, col2im, the optimizer).

A process-wide resource, as OpenBLAS keeps its threads and CuPy its memory
pool: one thread pool of :func:`host_threads` workers, used through
:func:`run_shared`. It changes how fast a result is computed, never the
result: the jobs given to it write disjoint parts of arrays, and no
configuration is read from it. Matrix products use the BLAS library's own
threads.
"""
from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from bioplaus.backend import BackendError

THREAD_ENV = ("BIOPLAUS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")

_executor = None
_executor_threads = 0
_threads_override = None


@contextlib.contextmanager
def one_host_thread():
    """Run bioplaus's elementwise work on the calling thread only, inside the block
    (memory tracing: temporaries of concurrent chunks would overlap at random)."""
    global _threads_override
    was = _threads_override
    _threads_override = 1
    try:
        yield
    finally:
        _threads_override = was


def host_threads() -> int:
    """Threads for bioplaus's own elementwise work on the host (the optimizer's updates).

    The first of ``BIOPLAUS_NUM_THREADS``, ``OMP_NUM_THREADS`` and
    ``OPENBLAS_NUM_THREADS`` that is set (so a run limited to one BLAS
    thread stays on one core), else the cores this process may use.
    Matrix products use the BLAS library's own threads.
    """
    if _threads_override is not None:
        return _threads_override
    for var in THREAD_ENV:
        val = os.environ.get(var, "").strip()
        if val:
            try:
                n = int(val)
            except ValueError:
                raise BackendError(f"{var}={val!r} is not a number of threads") from None
            if n < 1:
                raise BackendError(f"{var}={val!r}: the number of threads must be at least 1")
            return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def host_executor() -> ThreadPoolExecutor:
    """A thread pool of :func:`host_threads` workers (NumPy releases the GIL in its loops)."""
    global _executor, _executor_threads
    n = host_threads()
    if _executor is None or _executor_threads != n:
        if _executor is not None:
            _executor.shutdown(wait=True)
        _executor, _executor_threads = ThreadPoolExecutor(n, thread_name_prefix="bioplaus"), n
    return _executor


def run_shared(jobs) -> None:
    """Run independent callables (no arguments) on the host threads, each taken by
    the next thread that is free; the calling thread takes part.

    Returns when every job has run; raises what a job raised (jobs that no
    thread had taken by then may be left undone). With one host
    thread, or one job, the jobs run in order on the calling thread. A
    thread kept busy by something else (such as the BLAS library's idle
    threads, which spin for a while after every product) simply takes
    fewer jobs. Helpers that never started are cancelled, so a job may
    itself call :func:`run_shared` without waiting for a free thread.
    The jobs must not depend on their order: bioplaus gives it jobs that
    write disjoint parts of arrays, so the result is the same for any
    number of threads.
    """
    jobs = list(jobs)
    n_helpers = min(host_threads(), len(jobs)) - 1
    if n_helpers < 1:
        for job in jobs:
            job()
        return
    queue, lock = iter(jobs), threading.Lock()

    def drain():
        while True:
            with lock:
                job = next(queue, None)
            if job is None:
                return
            job()

    helpers = [host_executor().submit(drain) for _ in range(n_helpers)]
    try:
        drain()
    finally:
        for h in helpers:
            if not h.cancel():
                h.result()  # wait for a running helper, and raise what it raised


def channel_groups(fn, c: int, per_channel: int, group_values: int, on_host: bool = True) -> None:
    """Call ``fn(channels)`` for consecutive groups of ``c`` channels, on the host threads.

    ``channels`` is a ``slice``; each channel holds ``per_channel`` values, a
    group about ``group_values`` (at least one channel). The groups depend on
    the shapes only, never on the number of threads, so the result does not
    either. ``fn`` must write only its own channels. Not ``on_host`` (CuPy,
    whose device runs each kernel in parallel already): one call over all
    channels.
    """
    if not on_host:
        fn(slice(0, c))
        return
    size = max(1, group_values // max(per_channel, 1))
    run_shared([partial(fn, slice(a, min(a + size, c))) for a in range(0, c, size)])
