"""Fewer, fused kernels on the GPU: one-kernel RMSNorm, and the vision tower's rotary.

RMSNorm:

transformers' Qwen RMSNorm runs as six kernels (cast, square, mean, rsqrt, multiply, scale);
a decode step of Qwen2-VL-2B calls it 57 times, and at small batches the step's time is
mostly kernel launches (bench/draft_profile.py). torch's `rms_norm` does the same sums in
float32 in one kernel. The only difference: the weight is applied before the cast back to
bf16 rather than after, one rounding fewer.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

log = logging.getLogger("atelier.drafting")


def _rms_norm(module: Any, hidden_states: Any) -> Any:
    import torch

    return torch.nn.functional.rms_norm(
        hidden_states, module.weight.shape, module.weight, module.variance_epsilon
    )


def use_fused_rms_norm(model: Any) -> int:
    """Swaps every Qwen RMSNorm's forward for the one-kernel form; returns how many."""
    swapped = 0
    for module in model.modules():
        if (
            type(module).__name__.endswith("RMSNorm")
            and hasattr(module, "variance_epsilon")
            and getattr(module, "weight", None) is not None
        ):
            module.forward = partial(_rms_norm, module)
            swapped += 1
    return swapped


def use_fused_vision_rotary(model: Any) -> bool:
    """Fuses the vision tower's rotary embedding into one kernel, on the GPU; True if done.
    Used only where the packed tower is switched off (vision.py has its own rotary kernel,
    which costs no compiling at start: this one took 4 to 6 s of each start on an H200).

    transformers applies it in float32: casts, products, a rotate-half (slices, a negation, a
    concatenation), sums and casts back, each a pass over every patch's queries and keys.
    In the prefill of 32 images at 1 MP these elementwise passes took about a quarter of
    the GPU time (bench/draft_profile.py, H100). `torch.compile` turns the same function, the
    same float32 arithmetic, into one kernel. Where it cannot compile (no Triton, as on
    Windows), the model keeps transformers' own function.
    """
    import sys

    import torch

    module = sys.modules.get(type(model).__module__)
    original = getattr(module, "apply_rotary_pos_emb_vision", None)
    if original is None or getattr(original, "atelier_fused", False):
        return False
    fused = torch.compile(original, dynamic=True, fullgraph=True)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    try:  # compile now, on a small shape (dynamic: one kernel serves every length)
        q = torch.randn(64, 4, 16, device=device, dtype=dtype)
        cos = torch.randn(64, 16, device=device, dtype=torch.float32)
        for want, got in zip(original(q, q, cos, cos), fused(q, q, cos, cos), strict=True):
            torch.testing.assert_close(got, want)  # within one rounding of the dtype
    except Exception as e:  # any failure to compile, or a difference: keep the original
        log.warning("vision rotary left unfused: %s", str(e).splitlines()[0][:200])
        return False
    fused.atelier_fused = True  # type: ignore[attr-defined]
    setattr(module, "apply_rotary_pos_emb_vision", fused)  # noqa: B010
    return True
