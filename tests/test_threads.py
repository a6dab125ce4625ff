"""The thread that trains owns torch's only CPU thread pool (tuitrain/threads.py).

Each check runs in a fresh interpreter: the pytest process has touched torch from many threads.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or torch.get_num_threads() < 2,
                                reason="libgomp's thread pools: Linux with 2 or more torch threads")


def run_python(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, check=True)
    return out.stdout.split()


@pytest.mark.slow
def test_release_ends_the_calling_threads_pool_workers():
    code = r"""
import os, torch
from tests.helpers import ROOT
from tuitrain.threads import release_thread_pool
torch.randn(4_000_000).mul_(2).sum()  # a parallel region on the main thread: its pool starts
with_pool = len(os.listdir("/proc/self/task"))
released = release_thread_pool()
print(released, with_pool - len(os.listdir("/proc/self/task")), torch.get_num_threads())
"""
    released, ended, nthreads = run_python(code)
    assert released == "True"
    assert int(ended) == int(nthreads) - 1  # every worker of the main thread's pool exited


@pytest.mark.slow
def test_a_thread_training_after_the_release_does_not_sleep_between_parallel_regions():
    # Why a training thread was slow: with the main thread's pool alive, the next thread's
    # pool workers sleep on a futex after every parallel region (libgomp throttles spinning when it
    # manages more threads than CPUs). Count sleeps (voluntary context switches) per region.
    code = r"""
import os, threading, torch
from tuitrain.threads import release_thread_pool
REGIONS = 300
x = torch.randn(1_000_000)

def sleeps():
    found = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/status") as fh:
                found[tid] = sum(int(l.split()[1]) for l in fh if l.startswith("voluntary_ctxt_switches"))
        except OSError:  # a thread that just exited
            pass
    return found

def regions_in_a_thread():
    out = []
    def work():
        x.mul_(1.0)  # start this thread's pool before counting
        before = sleeps()
        for _ in range(REGIONS):
            x.mul_(1.0)
        after = sleeps()  # threads of the earlier thread's pool may exit meanwhile: compare the same threads
        out.append(sum(after[t] - before[t] for t in after if t in before) / REGIONS)
    t = threading.Thread(target=work)
    t.start(); t.join()
    return out[0]

x.mul_(1.0)  # the main thread prepares: its own pool
unreleased = regions_in_a_thread()
release_thread_pool()
print(unreleased, regions_in_a_thread())
"""
    unreleased, released = map(float, run_python(code))
    assert unreleased > 0.8  # the control: a sleep or two per region while two pools exist
    assert released < unreleased / 3  # workers spin between regions, as in a single-threaded script


@pytest.mark.slow
def test_release_is_harmless_twice_and_torch_still_works():
    code = r"""
import torch
from tuitrain.threads import release_thread_pool
print(release_thread_pool(), release_thread_pool(), float(torch.ones(3_000_000).sum()))
"""
    assert run_python(code) == ["True", "True", "3000000.0"]
