"""The decode step's Triton kernels compute what its torch ops compute (kernel_checks.py)."""

import sys
from pathlib import Path

import pytest

from tests.support.interpreter import run_in_interpreter

CHECKS = Path(__file__).with_name("kernel_checks.py")


@pytest.mark.slow
def test_kernels_compute_what_torch_computes_in_triton_s_interpreter() -> None:
    # No GPU needed: Triton's interpreter runs the kernels on the CPU, in float32.
    out = run_in_interpreter(CHECKS, "all kernel checks passed")
    assert out.count(" ok\n") == 6


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
