"""What one recording costs, and how many fit on a machine.

Measured, not guessed: CPU from `bench/recorder` (the whole recorder tree, steady state, CPU s
per recorded s) on a 2-core machine of the reference kind: 0.651 at 1280x720 and 1.274 at
1920x1080, both 30 fps; memory as the tree's peak PSS (shared pages counted once, /dev/shm
included) of `webrecord record --demo` for 15 s: 623 MiB at 720p, 732 MiB at 1080p. Both grow
linearly with the pixels encoded per second, which gives the coefficients below; re-measure
and override them (WEBRECORD_COST_*, read by the adapter and the operator) on other
hardware.

The local backend admits a queued task only while the running ones plus it stay within the
machine's CPU and memory budget (more at once drops frames: 3 at 720p30 on 2 cores gave
80-93% frame fidelity); the operator requests exactly this per recorder pod, so the
Kubernetes scheduler does the same admission per node.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

CPU_BASE_CORES = 0.154  # Chromium, Xvfb, PulseAudio, the audio encoder: size-independent
CPU_CORES_PER_MPX_PER_S = 0.0180  # capture + x264 per million pixels per second
MEMORY_BASE_MIB = 535
MEMORY_MIB_PER_MPIX = 95  # per million pixels of the page (frame buffers, Chromium tiles)
# An idle warm slot (`webrecord recorder --standby`, 1280x720, Chromium on a blank page), from
# bench/adapter's idle-slot row: its whole process tree, CPU s per s and PSS.
SLOT_IDLE_CPU_CORES = 0.02
SLOT_IDLE_MEMORY_MIB = 630  # PSS measured 460-626 MiB (sharing varies): the larger


@dataclass(frozen=True)
class Cost:
    cpu_cores: float
    memory_mib: float

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.cpu_cores + other.cpu_cores, self.memory_mib + other.memory_mib)

    def __mul__(self, times: float) -> Cost:
        return Cost(self.cpu_cores * times, self.memory_mib * times)


class CostModel(BaseSettings):
    """The coefficients, from the environment (WEBRECORD_COST_*) of the adapter and the
    operator alike; the defaults are the measurements above."""
    model_config = SettingsConfigDict(env_prefix="WEBRECORD_COST_", extra="ignore", frozen=True)

    cpu_base_cores: float = Field(CPU_BASE_CORES, ge=0)
    cpu_cores_per_mpx_per_s: float = Field(CPU_CORES_PER_MPX_PER_S, ge=0)
    memory_base_mib: float = Field(MEMORY_BASE_MIB, ge=0)
    memory_mib_per_mpix: float = Field(MEMORY_MIB_PER_MPIX, ge=0)
    slot_idle_cpu_cores: float = Field(SLOT_IDLE_CPU_CORES, ge=0)
    slot_idle_memory_mib: float = Field(SLOT_IDLE_MEMORY_MIB, ge=0)

    def idle_slot(self) -> Cost:
        """What one idle warm slot uses (the local backend counts it in its budget)."""
        return Cost(self.slot_idle_cpu_cores, self.slot_idle_memory_mib)

    def of(self, width: int, height: int, fps: int, audio_only: bool = False) -> Cost:
        """A recording at `fps` (a task's frame rate scales the capture + encode term). Audio
        only grabs and encodes no frames: the page still renders (its memory stays), the
        capture + x264 term is gone."""
        mpix = width * height / 1e6
        encode = 0.0 if audio_only else self.cpu_cores_per_mpx_per_s * mpix * fps
        return Cost(self.cpu_base_cores + encode,
                    self.memory_base_mib + self.memory_mib_per_mpix * mpix)


ZERO = Cost(0.0, 0.0)


def machine_cpu_cores() -> float:
    """CPUs this process may use: its affinity, lowered by a cgroup v2 quota (containers)."""
    cores = float(len(os.sched_getaffinity(0)))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return cores


def machine_memory_mib() -> float:
    """Memory this process may use: the machine's, lowered by a cgroup v2 limit."""
    total = psutil.virtual_memory().total
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            total = min(total, int(limit))
    except (OSError, ValueError):
        pass
    return total / 2**20


@dataclass(frozen=True)
class Budget:
    """What recordings may use together on this machine."""
    cpu_cores: float
    memory_mib: float

    def admits(self, running: Cost, count: int, candidate: Cost) -> bool:
        """Whether `candidate` may start beside `count` running recordings costing `running`.
        One recording always may, even a page larger than the budget: refusing it forever
        would be worse than recording it slowly."""
        if count == 0:
            return True
        total = running + candidate
        return total.cpu_cores <= self.cpu_cores + 1e-9 and total.memory_mib <= self.memory_mib

    def why_waiting(self, running: Cost, count: int, candidate: Cost) -> str:
        return (f"queued: waiting for capacity (needs {candidate.cpu_cores:.2f} CPU cores and "
                f"{candidate.memory_mib:.0f} MiB; {count} recording(s) use {running.cpu_cores:.2f} "
                f"of {self.cpu_cores:.2f} cores and {running.memory_mib:.0f} of "
                f"{self.memory_mib:.0f} MiB)")
