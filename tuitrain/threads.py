"""Hand torch's CPU thread pool over to the thread that trains.

Why this exists: on Linux, torch runs its parallel CPU kernels (ATen's parallel_for,
MKL, oneDNN) on GNU OpenMP, libgomp. libgomp keeps one pool of worker threads for each thread that
ever ran a parallel region, and counts the threads it manages over all pools: 1 for the process,
plus each pool's workers. While that count is at most the number of CPUs, a worker that finishes a
region spins for the next one (microseconds away in a training step); above it, every worker of
every pool spins only 100 times and then sleeps on a futex, to be woken by a system call for the
next region, a hundred times a step (libgomp's ``do_spin``, ``gomp_managed_threads >
gomp_available_cpus``). tuitrain prepares on the main thread (normalising the data, building the
model: parallel regions, so a pool of N - 1 workers on N CPUs) and trains on another thread (a
second pool of N - 1), so the count is 2N - 1 > N on any machine with 2 or more CPUs, and the
trainer's workers sleep between all regions: a third of the throughput of the same loop run on
the main thread, on 2 CPUs.

:func:`release_thread_pool` frees the calling thread's pool through OpenMP 5.0's
``omp_pause_resource_all``, so the trainer's pool is the only one and behaves exactly as it does
for a plain script. Call it in the thread that prepared, after preparing and before the training
thread starts; that thread must run no torch kernels while training runs (waiting, drawing a UI
and writing files are fine).
"""

from __future__ import annotations

import ctypes
import functools
import os

OMP_PAUSE_SOFT = 1  # omp_pause_resource_t: soft keeps nothing but data the runtime can rebuild


@functools.cache
def _libgomp() -> ctypes.CDLL | None:
    """The libgomp this process has loaded (torch's own copy), or None where there is none."""
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "libgomp" in line and line.rstrip().endswith((".so", ".1"))}
    except OSError:  # not Linux: torch uses another OpenMP (libomp) or its own pool there
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)  # already loaded: this returns a handle to the same copy
        except OSError:
            continue
        if hasattr(lib, "omp_pause_resource_all"):
            return lib
    return None


def release_thread_pool() -> bool:
    """Free this thread's OpenMP worker threads so that the next thread to train owns the only pool.

    Returns True when libgomp took the request (whether or not this thread had a pool), False where
    torch does not run on libgomp here (macOS, Windows, a build with another backend): nothing to do.
    """
    import torch  # noqa: F401  (loads libgomp, so it is in the maps when this is the first torch call)

    lib = _libgomp()
    if lib is None:
        return False
    lib.omp_pause_resource_all.argtypes = [ctypes.c_int]
    lib.omp_pause_resource_all.restype = ctypes.c_int
    return lib.omp_pause_resource_all(OMP_PAUSE_SOFT) == 0


def pool_threads() -> int:
    """Threads of this process (Linux), for tests and benchmarks that check the pool went away."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0
