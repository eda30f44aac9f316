"""The packed vision prefill computes what transformers' vision towers compute
(vision_checks.py): rotary and QuickGELU kernels, batched attention, whole towers."""

import sys
from pathlib import Path

import pytest

from tests.support.interpreter import run_in_interpreter

CHECKS = Path(__file__).with_name("vision_checks.py")


def test_packed_vision_matches_transformers_in_triton_s_interpreter() -> None:
    out = run_in_interpreter(CHECKS, "all vision checks passed")
    assert out.count(" tower ok\n") == 3


@pytest.mark.gpu
def test_packed_vision_matches_transformers_on_the_gpu() -> None:
    import torch

    sys.path.insert(0, str(CHECKS.parent))
    import vision_checks

    for dtype in (torch.bfloat16, torch.float32):
        for check in vision_checks.CHECKS:
            check("cuda", dtype)


@pytest.mark.gpu
def test_the_rotary_kernel_reaches_past_two_to_the_31_elements() -> None:
    # 256 images at 1 MP: qkv holds 5 billion elements, past what 32-bit offsets address.
    import torch
    from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision

    from app.engines.local.vision import vision_rotary

    heads, dim = 16, 80
    patches = (1 << 31) // (3 * heads * dim) + 4096
    qkv = torch.randn(patches, 3 * heads * dim, dtype=torch.bfloat16, device="cuda")
    half = torch.randn(patches, dim // 2, device="cuda")
    angles = torch.cat((half, half), dim=-1)
    q, k = vision_rotary(qkv, angles.cos(), angles.sin(), heads)
    tail = slice(patches - 8192, patches)
    parts = qkv[tail].view(-1, 3, heads, dim)
    want_q, want_k = apply_rotary_pos_emb_vision(
        parts[:, 0], parts[:, 1], angles[tail].cos(), angles[tail].sin()
    )
    torch.testing.assert_close(q[tail].float(), want_q.float(), rtol=3e-2, atol=3e-2)
    torch.testing.assert_close(k[tail].float(), want_k.float(), rtol=3e-2, atol=3e-2)
