"""How torch's CPU threads wait, chosen for the machine a run finds; and saying when a busy box slows it.

torch's parallel CPU kernels run on GNU OpenMP (libgomp) on Linux. Its worker threads spin between
parallel regions (OMP_WAIT_POLICY unset: spin a while, then sleep): the fastest on free cores, and a
collapse when other processes keep the cores busy, because a region waits for its slowest thread
and a spinning thread burns the time slice the descheduled one needs. Measured on 2 cores with
other processes busy (the notes' cnn, batch 100): unset, 0.39x the samples/s of the same run with
OMP_WAIT_POLICY=PASSIVE (workers sleep at once); on a quiet box, unset is the fastest. So the CLI
samples how busy the cores are (0.15 s, before torch is imported: libgomp reads the variable once,
when torch loads it) and sets PASSIVE when other processes keep half a core or more busy. A policy
or thread count the user set is left alone; ``TUITRAIN_AUTO_OMP=0`` turns the choice off.

The wait policy cannot change once torch is loaded. The thread count could
(``torch.set_num_threads``), and one thread was faster still under heavy load, but a different
thread count changes floating-point sums (the same command would give different numbers on a busy
and a quiet box, and a resumed run would no longer match), so it stays the user's choice. While
training, :class:`SlowWatch` notices the throughput collapsing with the load above the core count
and the engine says so in a ``slow`` event (the log, the progress lines, the status line).

No torch and no textual here.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field

BUSY_FROM = 0.5
"""Cores kept busy by other processes from which torch's threads sleep rather than spin."""
SAMPLE_S = 0.15
"""How long the CLI samples the cores' usage before choosing."""
USER_SETTINGS = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")
"""Variables that mean the user chose how the threads run: never overridden."""
OFF = "TUITRAIN_AUTO_OMP"
"""Set to 0 to keep libgomp's defaults whatever the load (benchmarks compare with it)."""


@dataclass(frozen=True)
class WaitChoice:
    """What the CLI chose before loading torch, and why (shown in the start event and the log)."""

    env: dict[str, str] = field(default_factory=dict)
    """Variables set for libgomp (empty: its defaults, or the user's own settings)."""
    reason: str = ""
    busy: float | None = None
    """Cores other processes kept busy while sampling (None: not sampled)."""
    cores: int = 0

    def to_record(self) -> dict:
        """The start event's ``threads`` details (the wait policy in effect, and why)."""
        return {"wait_policy": self.env.get("OMP_WAIT_POLICY", ""), "reason": self.reason,
                "busy_cores": None if self.busy is None else round(self.busy, 2), "cores": self.cores}


def choose_wait_policy(busy: float, cores: int, env: Mapping[str, str]) -> WaitChoice:
    """The libgomp settings for a machine whose other processes keep ``busy`` of ``cores`` busy.

    Pure: the caller samples the load and applies ``env``. The user's own settings win.
    """
    mine = [name for name in USER_SETTINGS if env.get(name)]
    if mine:
        return WaitChoice(reason=f"your {', '.join(f'{n}={env[n]}' for n in mine)}", busy=busy, cores=cores)
    if _turned_off(env):
        return WaitChoice(reason=f"{OFF}={env[OFF]}: libgomp's defaults", busy=busy, cores=cores)
    if busy < BUSY_FROM:
        return WaitChoice(reason=f"quiet box ({busy:.1f} of {cores} cores busy): threads spin between kernels",
                          busy=busy, cores=cores)
    return WaitChoice({"OMP_WAIT_POLICY": "PASSIVE"},
                      f"busy box ({busy:.1f} of {cores} cores busy with other processes): threads sleep between "
                      f"kernels", busy=busy, cores=cores)


def _turned_off(env: Mapping[str, str]) -> bool:
    return env.get(OFF, "").strip().lower() in ("0", "off", "no", "false")


def busy_cores(sample_s: float = SAMPLE_S) -> float:
    """Cores kept busy during ``sample_s`` (this process sleeps meanwhile: the others' load)."""
    import psutil

    return psutil.cpu_percent(interval=sample_s) / 100 * (psutil.cpu_count() or 1)


_chosen: WaitChoice | None = None


def apply_wait_policy(environ: MutableMapping[str, str] = os.environ, sample: Callable[[], float] = busy_cores,
                      modules: Mapping[str, object] = sys.modules) -> WaitChoice:
    """Choose for this machine and set the variables; call before anything imports torch.

    With torch already loaded (an in-process caller), changing the environment would do nothing:
    the choice says so and nothing is set.
    """
    global _chosen
    cores = os.cpu_count() or 1
    if "torch" in modules:
        _chosen = WaitChoice(reason="torch was loaded before the choice: libgomp's settings as they were",
                             cores=cores)
        return _chosen
    settled = _turned_off(environ) or any(environ.get(name) for name in USER_SETTINGS)
    if settled:  # the user's own settings, or the choice turned off: nothing to sample
        _chosen = dataclasses.replace(choose_wait_policy(0.0, cores, environ), busy=None)
    else:
        _chosen = choose_wait_policy(sample(), cores, environ)
    environ.update(_chosen.env)
    return _chosen


def chosen() -> WaitChoice | None:
    """What :func:`apply_wait_policy` chose in this process (None: it was not called, e.g. ``fit``)."""
    return _chosen


SLOW_FRACTION = 0.5
"""A step record's samples/s below this fraction of the recent best counts as slow..."""
RECOVERED_FRACTION = 0.8
"""...and at or above this fraction of the best before the slowdown, as recovered."""
SLOW_RECORDS = 3
"""Slow step records in a row before the event (one slow record is noise: an evaluation, a save)."""
RECENT = 60
"""Step records the recent best is taken over."""
WARM_UP = 2
"""First step records left out of the best (allocation, caches)."""
WATCH_AFTER_S = 30.0
"""No verdict in a run's first seconds: a best worth comparing with takes a while (and short runs,
the tests' among them, keep their records as they were on a loaded machine)."""


class SlowWatch:
    """Notices a CPU run's throughput collapsing while the load is above the core count.

    Fed the samples/s of each step record (at most a few a second: ``os.getloadavg`` is a read of
    /proc/loadavg); returns the details of a ``slow`` event when it should be said, once a slowdown
    and once its recovery.
    """

    def __init__(self, cores: int | None = None, load: Callable[[], float] = lambda: os.getloadavg()[0],
                 wait_policy: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.cores = cores or os.cpu_count() or 1
        self.load = load
        self.clock = clock
        self.since: float | None = None
        """When the first record was observed."""
        self.wait_policy = os.environ.get("OMP_WAIT_POLICY", "") if wait_policy is None else wait_policy
        self.rates: deque[float] = deque(maxlen=RECENT)
        self.seen = 0
        self.slow_in_a_row = 0
        self.slow_from: float | None = None
        """The best samples/s before the slowdown that was reported (None: none reported)."""

    def observe(self, rate: float) -> dict | None:
        """The next step record's samples/s; the ``slow`` event's details when one is due."""
        self.seen += 1
        if self.since is None:
            self.since = self.clock()
        if self.seen <= WARM_UP or rate <= 0:
            return None
        if self.slow_from is not None:
            if rate >= RECOVERED_FRACTION * self.slow_from:
                best, self.slow_from = self.slow_from, None
                self.rates.clear()
                self.rates.append(rate)
                return {"state": "recovered", "samples_per_s": round(rate, 1), "best": round(best, 1),
                        "reason": f"throughput back to {rate:,.0f} samples/s"}
            return None
        best = max(self.rates, default=0.0)
        self.rates.append(rate)
        if not best or rate >= SLOW_FRACTION * best or self.clock() - self.since < WATCH_AFTER_S:
            self.slow_in_a_row = 0
            return None
        load = self.load()
        self.slow_in_a_row = self.slow_in_a_row + 1 if load > self.cores else 0
        if self.slow_in_a_row < SLOW_RECORDS:
            return None
        self.slow_from, self.slow_in_a_row = best, 0
        return {"state": "slow", "samples_per_s": round(rate, 1), "best": round(best, 1), "load": round(load, 1),
                "cores": self.cores, "wait_policy": self.wait_policy, "reason": self.advice(rate, best, load),
                "note": f"SLOW: busy box, load {load:.1f} on {self.cores} cores ({100 * rate / best:.0f}% of the "
                        f"recent samples/s)"}

    def advice(self, rate: float, best: float, load: float) -> str:
        """Why the run is slow and what helps (the policy cannot change in a running process)."""
        said = (f"{rate:,.0f} samples/s, {100 * rate / best:.0f}% of the recent {best:,.0f}: load {load:.1f} on "
                f"{self.cores} cores, other processes take the CPU")
        if self.wait_policy.upper() != "PASSIVE":
            return (f"{said}; torch's threads spin while waiting, which collapses on a busy box and cannot change "
                    f"in a running process: restart with OMP_WAIT_POLICY=PASSIVE (or OMP_NUM_THREADS=1)")
        return f"{said}; fewer threads may help: restart with OMP_NUM_THREADS=1"
