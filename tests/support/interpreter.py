"""Runs a checks script in Triton's CPU interpreter, in a process of its own.

Triton reads TRITON_INTERPRET=1 when a kernel is defined, so a script whose kernels must run
on the CPU cannot share the test process (tests/drafting/kernel_checks.py, vision_checks.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_in_interpreter(script: Path, done: str) -> str:
    """The script's output, asserting it exited cleanly and printed `done`; skips where
    Triton has no interpreter that runs these kernels (before 3.8: no run-time loop range)."""
    pytest.importorskip("triton", minversion="3.8", reason="Triton's interpreter from 3.8")
    out = subprocess.run(
        [sys.executable, str(script)],
        env=os.environ | {"TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert done in out.stdout
    return out.stdout
