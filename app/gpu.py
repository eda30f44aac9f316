"""The local GPU's memory, to preselect an export profile (nvidia-smi; no torch import)."""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache


@lru_cache(maxsize=1)
def local_gpu_gb() -> float | None:
    """Memory of the largest local NVIDIA GPU in GB, or None when there is none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=3,
        ).stdout
        sizes = [float(line) / 1024 for line in out.split() if line.strip()]
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return max(sizes) if sizes else None
