"""Checks of the packed vision prefill (app/engines/local/vision.py) against transformers.

Run by tests/drafting/test_vision.py: in Triton's CPU interpreter, in a process of its own
(TRITON_INTERPRET=1 is read when the kernels are defined), in float32; and on a GPU in the
test process, in bfloat16 and float32.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.engines.local import vision  # noqa: E402

# (t, h, w) patch grids of four images, one of them another shape, h and w even (2x2 merge).
GRIDS = [[1, 4, 6], [1, 4, 6], [1, 6, 4], [1, 8, 8]]


def close(got: Any, want: Any, dtype: Any) -> None:
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(got.float(), want.float(), rtol=tol, atol=tol)


def check_vision_rotary(device: str, dtype: Any) -> None:
    from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision

    torch.manual_seed(0)
    for heads, dim in ((4, 16), (3, 80), (2, 72)):  # 80: Qwen2-VL's, 72: Qwen3-VL's
        patches = 37
        qkv = torch.randn(patches, 3 * heads * dim, dtype=dtype, device=device)
        half = torch.randn(patches, dim // 2, device=device)
        angles = torch.cat((half, half), dim=-1)
        parts = qkv.view(patches, 3, heads, dim)
        want_q, want_k = apply_rotary_pos_emb_vision(
            parts[:, 0], parts[:, 1], angles.cos(), angles.sin()
        )
        q, k = vision.vision_rotary(qkv, angles.cos(), angles.sin(), heads)
        assert q.is_contiguous() and k.is_contiguous() and q.shape == (patches, heads, dim)
        close(q, want_q, dtype)
        close(k, want_k, dtype)


def check_quick_gelu(device: str, dtype: Any) -> None:
    from transformers.activations import QuickGELUActivation

    torch.manual_seed(0)
    x = torch.randn(3, 5000, dtype=dtype, device=device) * 4  # not a whole number of blocks
    want = QuickGELUActivation()(x)
    got = vision.quick_gelu_(x)
    assert got.data_ptr() == x.data_ptr()  # in place
    close(got, want, dtype)


def check_batched_attention(device: str, dtype: Any) -> None:
    torch.manual_seed(0)
    lengths = [5, 5, 7, 0, 3, 3, 3]
    heads, dim = 2, 16
    total = sum(lengths)
    q, k, v = (torch.randn(total, heads, dim, dtype=dtype, device=device) for _ in range(3))
    got = vision.batched_attention(q, k, v, lengths, dim**-0.5)
    start = 0
    for length in lengths:
        if length:
            part = [x[start : start + length].transpose(0, 1) for x in (q, k, v)]
            want = torch.nn.functional.scaled_dot_product_attention(*part)
            close(got[start : start + length], want.transpose(0, 1), dtype)
        start += length


def towers() -> list[tuple[str, Any]]:
    """A tiny random vision tower of each family (window attention on Qwen2.5-VL's,
    deepstack on Qwen3-VL's)."""
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
        Qwen2_5_VisionTransformerPretrainedModel,
    )
    from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig
    from transformers.models.qwen2_vl.modeling_qwen2_vl import (
        Qwen2VisionTransformerPretrainedModel,
    )
    from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLVisionConfig
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel

    torch.manual_seed(0)
    small = {"depth": 2, "num_heads": 2, "hidden_size": 32}
    return [
        (
            "qwen2_vl",
            Qwen2VisionTransformerPretrainedModel._from_config(
                Qwen2VLVisionConfig(**small, embed_dim=32, mlp_ratio=2)
            ),
        ),
        (
            "qwen2_5_vl",
            Qwen2_5_VisionTransformerPretrainedModel._from_config(
                Qwen2_5_VLVisionConfig(
                    **small,
                    intermediate_size=64,
                    out_hidden_size=32,
                    window_size=56,
                    fullatt_block_indexes=[1],
                )
            ),
        ),
        (
            "qwen3_vl",
            Qwen3VLVisionModel._from_config(
                Qwen3VLVisionConfig(
                    **small,
                    intermediate_size=64,
                    out_hidden_size=32,
                    num_position_embeddings=64,
                    deepstack_visual_indexes=[0],
                )
            ),
        ),
    ]


def check_towers(device: str, dtype: Any) -> None:
    """The packed tower's output is the tower's own, for each family."""
    for family, tower in towers():
        tower = tower.to(device=device, dtype=dtype).eval()
        packed = copy.deepcopy(tower)
        switched = vision.use_packed_vision(packed)
        assert switched == tower.config.depth, (family, switched)
        grid = torch.tensor(GRIDS, device=device)
        c = tower.config
        per_patch = c.in_channels * c.temporal_patch_size * c.patch_size**2
        pixels = torch.randn(int(grid.prod(-1).sum()), per_patch, dtype=dtype, device=device)
        with torch.inference_mode():
            want = tower(pixels, grid_thw=grid)
            got = packed(pixels, grid_thw=grid)
        close(got.last_hidden_state, want.last_hidden_state, dtype)
        close(got.pooler_output, want.pooler_output, dtype)
        print(family, "tower ok", flush=True)


CHECKS = [check_vision_rotary, check_quick_gelu, check_batched_attention, check_towers]

if __name__ == "__main__":
    from app.engines.local.kernels import available

    assert available("cpu"), "run with TRITON_INTERPRET=1"
    for check in CHECKS:
        check("cpu", torch.float32)
        print(check.__name__, "ok", flush=True)
    print("all vision checks passed")
