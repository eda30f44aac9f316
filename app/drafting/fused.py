"""One-kernel RMSNorm for the decode step on the GPU.

transformers' Qwen RMSNorm runs as six kernels (cast, square, mean, rsqrt, multiply, scale);
a decode step of Qwen2-VL-2B calls it 57 times, and at small batches the step's time is
mostly kernel launches (bench/draft_profile.py). torch's `rms_norm` does the same sums in
float32 in one kernel. The only difference: the weight is applied before the cast back to
bf16 rather than after, one rounding fewer.
"""

from __future__ import annotations

from functools import partial
from typing import Any


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
