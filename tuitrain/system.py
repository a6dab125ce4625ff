"""System usage: CPU, RAM and (through NVML) each GPU. No torch, no textual.

NVML is initialised once; no GPU, no driver or no pynvml means an empty GPU list, never an error.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import psutil


@dataclass(frozen=True)
class GPUSample:
    """One GPU as NVML reports it."""

    index: int
    name: str
    util_percent: float
    mem_used_mb: float
    mem_total_mb: float
    temp_c: float | None
    power_w: float | None


@dataclass(frozen=True)
class SystemSample:
    """One reading of the machine and of the training process."""

    time: float
    cpu_percent: list[float]
    rss_mb: float
    ram_used_mb: float
    ram_total_mb: float
    gpus: list[GPUSample] = field(default_factory=list)
    gpu_note: str = ""

    def to_record(self) -> dict:
        """The run directory's ``system`` record."""
        return {"type": "system", **asdict(self)}


class SystemSampler:
    """Samples on demand; keeps the NVML handle open between samples."""

    def __init__(self, pid: int | None = None):
        self._proc = psutil.Process(pid or os.getpid())
        self._proc.cpu_percent(None)
        psutil.cpu_percent(percpu=True)  # the first call primes the counters
        self._nvml = None
        self.gpu_note = ""
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
        except Exception as exc:  # no library, no driver, no GPU: all mean "no GPU panel"
            self.gpu_note = f"no GPU found (NVML: {str(exc) or type(exc).__name__})"

    def sample(self) -> SystemSample:
        """One SystemSample now."""
        mem = psutil.virtual_memory()
        return SystemSample(
            time=time.time(),
            cpu_percent=psutil.cpu_percent(percpu=True),
            rss_mb=self._proc.memory_info().rss / 2**20,
            ram_used_mb=(mem.total - mem.available) / 2**20,
            ram_total_mb=mem.total / 2**20,
            gpus=self._gpus(),
            gpu_note=self.gpu_note,
        )

    def _gpus(self) -> list[GPUSample]:
        nv = self._nvml
        if nv is None:
            return []
        found = []
        try:
            for i in range(nv.nvmlDeviceGetCount()):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                mem = nv.nvmlDeviceGetMemoryInfo(h)
                name = nv.nvmlDeviceGetName(h)
                found.append(GPUSample(
                    index=i,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    util_percent=float(nv.nvmlDeviceGetUtilizationRates(h).gpu),
                    mem_used_mb=mem.used / 2**20,
                    mem_total_mb=mem.total / 2**20,
                    temp_c=_maybe(lambda h=h: float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))),
                    power_w=_maybe(lambda h=h: nv.nvmlDeviceGetPowerUsage(h) / 1000.0),
                ))
        except Exception as exc:  # a GPU that vanished or a driver error: show it, don't crash
            self.gpu_note = f"NVML error: {exc}"
        return found


def _maybe(read):
    """Some GPUs do not report temperature or power: None rather than an error."""
    try:
        return read()
    except Exception:
        return None
