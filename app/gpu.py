"""This machine's NVIDIA GPUs: the one place Atelier looks for them, without importing torch
(seconds) in the web process. nvidia-smi gives each one's memory; the driver's proc entry says
whether CUDA can run at all, as cheaply as a request can afford."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

FRESH_S = 2.0  # memory in use changes as training runs; asked again after this long
_cache: tuple[float, list[Gpu]] | None = None


@dataclass(frozen=True)
class Gpu:
    used_gb: float
    total_gb: float


def gpus() -> list[Gpu]:
    """Each GPU nvidia-smi sees, with its memory in GB; empty without one (or without it)."""
    global _cache
    if _cache is not None and time.monotonic() - _cache[0] < FRESH_S:
        return _cache[1]
    found: list[Gpu] = []
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=memory.used,memory.total", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=3,
                check=True,
            ).stdout
            for line in out.strip().splitlines():
                used, total = (float(v) / 1024 for v in line.split(","))
                found.append(Gpu(used, total))
        except (OSError, subprocess.SubprocessError, ValueError):
            found = []
    _cache = (time.monotonic(), found)
    return found


@lru_cache(maxsize=1)
def local_gpu_gb() -> float | None:
    """Memory of the largest local GPU in GB (to preselect a profile, to say what fits), or
    None when there is none; it does not change while the app runs."""
    sizes = [g.total_gb for g in gpus()]
    return max(sizes) if sizes else None


def memory_in_use() -> str | None:
    """'17.2 of 24.0 GB' for each GPU, or None without one."""
    return "; ".join(f"{g.used_gb:.1f} of {g.total_gb:.1f} GB" for g in gpus()) or None


def cuda_present() -> bool:
    """Whether CUDA can run here: torch's own answer once it is loaded, else whether the
    NVIDIA driver is (its proc entry)."""
    torch = sys.modules.get("torch")
    if torch is not None:  # already paid for: its answer is the engine's own
        return bool(torch.cuda.is_available())
    return Path("/proc/driver/nvidia/version").exists()
