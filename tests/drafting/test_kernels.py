"""The decode step's Triton kernels compute what its torch ops compute (kernel_checks.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECKS = Path(__file__).with_name("kernel_checks.py")


@pytest.mark.slow
def test_kernels_compute_what_torch_computes_in_triton_s_interpreter() -> None:
    # No GPU needed: Triton's interpreter runs the kernels on the CPU, in float32. It is
    # chosen when the kernels are defined, so the checks run in a process of their own.
    # Older interpreters cannot loop over a range given at run time.
    pytest.importorskip("triton", minversion="3.8", reason="Triton's interpreter from 3.8")
    out = subprocess.run(
        [sys.executable, str(CHECKS)],
        env=os.environ | {"TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "all kernel checks passed" in out.stdout
    assert out.stdout.count(" ok\n") == 6


@pytest.mark.gpu
def test_kernels_compute_what_torch_computes_on_the_gpu() -> None:
    import torch

    sys.path.insert(0, str(CHECKS.parent))
    import kernel_checks

    for dtype in (torch.bfloat16, torch.float32):
        for check in kernel_checks.CHECKS:
            if check is kernel_checks.check_decoder_uses_them and dtype == torch.bfloat16:
                continue  # random weights in bf16: near-ties may round either way
            check("cuda", dtype)
