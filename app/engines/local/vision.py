"""The vision tower's prefill: every image's attention in one call, rotary and QuickGELU fused.

Most of a 2B draft's GPU time at large batches is the vision tower (32 blocks over 5,184
patches an image at 1 MP). transformers' sdpa path, without flash-attn installed, splits the
patches image by image at every block: a host sync for the lengths, then one attention call
per image over transposed views (256 calls a block at batch 256). Here:

- `packed_attention`: one sdpa call for each run of images of the same size (the engine
  sorts a batch by size), over (images, heads, patches, head size) views of the qkv
  product, with one host sync a forward rather than one a block. torch's variable-length
  flash attention (`torch.nn.attention.varlen.varlen_attn`, torch 2.11) was slower than
  transformers' image-by-image calls on an H200: the 2B tower took 32.0 ms an image with
  it against 30.3, and 26.0 with the batched sdpa
  (bench/results/2026-12-01-h200-vision-prefill-2b-variants.txt);
- `vision_rotary`: one Triton kernel takes q and k out of the qkv product and applies the
  rotary embedding, in float32 as transformers does, writing both contiguous; it replaces
  about ten elementwise passes (casts, products, the rotate-half's slices and concatenation);
- `quick_gelu_`: Qwen2-VL's MLP activation, x * sigmoid(1.702 x), in one pass and in place,
  where torch takes three passes and a second buffer as large as the MLP's widest tensor.
  The arithmetic is float32 throughout, rounded once (transformers rounds each of the three
  ops to bfloat16), so its outputs differ by a rounding at most.

`use_packed_vision(model)` switches the tower's attention modules (Qwen2-VL, Qwen2.5-VL and
Qwen3-VL share their shape) and, for Qwen2-VL, its MLP activation. Without Triton (Windows)
the rotary stays transformers' own.
"""

from __future__ import annotations

import logging
import sys
from functools import partial
from typing import Any

from app.engines.local.kernels import available as triton_runs

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

log = logging.getLogger("atelier.drafting")

ROTARY_ROWS = 16  # (patch, head) rows one rotary program takes
GELU_BLOCK = 4096  # elements one QuickGELU program takes

if triton is not None:

    @triton.jit
    def _vision_rotary_kernel(
        qkv_ptr,
        cos_ptr,
        sin_ptr,
        q_out_ptr,
        k_out_ptr,
        rows,
        HEADS: tl.constexpr,
        D: tl.constexpr,
        HALF: tl.constexpr,
        HALF_BLOCK: tl.constexpr,
        ROWS: tl.constexpr,
    ):
        # Row r is (patch r // HEADS, head r % HEADS); qkv is (patches, 3, HEADS, D). In
        # 64 bits: at batch 256 the offsets pass 2**31 (5 billion elements in qkv).
        r = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
        d = tl.arange(0, HALF_BLOCK)
        live = (r < rows)[:, None] & (d < HALF)[None, :]
        patch = r // HEADS
        head = r % HEADS
        q_at = (patch * 3 * HEADS + head)[:, None] * D + d[None, :]
        k_at = q_at + HEADS * D
        angle_at = patch[:, None] * D + d[None, :]
        cos1 = tl.load(cos_ptr + angle_at, mask=live)
        cos2 = tl.load(cos_ptr + angle_at + HALF, mask=live)
        sin1 = tl.load(sin_ptr + angle_at, mask=live)
        sin2 = tl.load(sin_ptr + angle_at + HALF, mask=live)
        out_at = r[:, None] * D + d[None, :]
        _rotate(qkv_ptr + q_at, q_out_ptr + out_at, cos1, cos2, sin1, sin2, live, HALF)
        _rotate(qkv_ptr + k_at, k_out_ptr + out_at, cos1, cos2, sin1, sin2, live, HALF)

    @triton.jit
    def _rotate(src, dst, cos1, cos2, sin1, sin2, live, HALF: tl.constexpr):
        x1 = tl.load(src, mask=live).to(tl.float32)
        x2 = tl.load(src + HALF, mask=live).to(tl.float32)
        # transformers: x * cos + rotate_half(x) * sin, where rotate_half(x) = (-x2, x1)
        tl.store(dst, (x1 * cos1 - x2 * sin1).to(dst.dtype.element_ty), mask=live)
        tl.store(dst + HALF, (x2 * cos2 + x1 * sin2).to(dst.dtype.element_ty), mask=live)

    @triton.jit
    def _quick_gelu_kernel(x_ptr, n, BLOCK: tl.constexpr):
        at = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        live = at < n
        x = tl.load(x_ptr + at, mask=live).to(tl.float32)
        y = x * tl.sigmoid(1.702 * x)
        tl.store(x_ptr + at, y.to(x_ptr.dtype.element_ty), mask=live)


def vision_rotary(qkv: Any, cos: Any, sin: Any, heads: int) -> tuple[Any, Any]:
    """q and k (patches, heads, head size), contiguous, rotated, from the qkv product's
    output (patches, 3 * heads * head size); `cos` and `sin` are (patches, head size)."""
    import torch

    patches = qkv.shape[0]
    dim = qkv.shape[-1] // (3 * heads)
    qkv = qkv.contiguous()
    cos, sin = cos.float().contiguous(), sin.float().contiguous()
    q = torch.empty((patches, heads, dim), dtype=qkv.dtype, device=qkv.device)
    k = torch.empty_like(q)
    rows = patches * heads
    half = dim // 2
    grid = (triton.cdiv(rows, ROTARY_ROWS),)
    _vision_rotary_kernel[grid](
        qkv,
        cos,
        sin,
        q,
        k,
        rows,
        HEADS=heads,
        D=dim,
        HALF=half,
        HALF_BLOCK=triton.next_power_of_2(half),
        ROWS=ROTARY_ROWS,
    )
    return q, k


def quick_gelu_(x: Any) -> Any:
    """x * sigmoid(1.702 x), in place on a contiguous `x`; returns it."""
    n = x.numel()
    _quick_gelu_kernel[(triton.cdiv(n, GELU_BLOCK),)](x, n, BLOCK=GELU_BLOCK)
    return x


class _Lengths:
    """Each image's (or window's) patch count, read from `cu_seqlens` once per tensor: the
    tower passes the same tensor to every block (Qwen2.5-VL two, its windows' and its
    images'), so one host sync each serves all the blocks of a forward."""

    KEPT = 4  # tensors remembered: a forward's few, not every forward's

    def __init__(self) -> None:
        self.seen: list[tuple[Any, list[int]]] = []  # (tensor, lengths), held: ids stay apart

    def of(self, cu_seqlens: Any) -> list[int]:
        for tensor, lengths in self.seen:
            if tensor is cu_seqlens:
                return lengths
        bounds = cu_seqlens.tolist()
        lengths = [b - a for a, b in zip(bounds, bounds[1:], strict=False)]
        self.seen = [*self.seen[-(self.KEPT - 1) :], (cu_seqlens, lengths)]
        return lengths


def batched_attention(q: Any, k: Any, v: Any, lengths: list[int], scale: float) -> Any:
    """Attention within each image's patches, (patches, heads, head size) in and out, one
    sdpa call for each run of consecutive images of the same length."""
    import torch

    heads, dim = q.shape[1:]
    out = torch.empty_like(q)
    start = first = 0
    while first < len(lengths):
        length = lengths[first]
        run = 1
        while first + run < len(lengths) and lengths[first + run] == length:
            run += 1
        end = start + run * length
        if length:
            # (run, heads, length, dim) views of the run's patches
            q_, k_, v_ = (
                x[start:end].view(run, length, heads, dim).transpose(1, 2) for x in (q, k, v)
            )
            got = torch.nn.functional.scaled_dot_product_attention(q_, k_, v_, scale=scale)
            out[start:end] = got.transpose(1, 2).reshape(end - start, heads, dim)
        start, first = end, first + run
    return out


def packed_attention(
    module: Any,
    hidden_states: Any,
    cu_seqlens: Any,
    position_embeddings: tuple[Any, Any] | None = None,
    max_seqlen: Any = None,
    *,
    lengths: _Lengths,
    rotary_kernel: bool,
    **kwargs: Any,
) -> Any:
    """A vision attention module's forward (same arguments, same result), in one call."""
    patches = hidden_states.shape[0]
    heads = module.num_heads
    qkv = module.qkv(hidden_states)
    dim = qkv.shape[-1] // (3 * heads)
    cos, sin = position_embeddings  # type: ignore[misc]
    if rotary_kernel:
        q, k = vision_rotary(qkv, cos, sin, heads)
    else:
        apply = sys.modules[type(module).__module__].apply_rotary_pos_emb_vision
        parts = qkv.view(patches, 3, heads, dim)
        q, k = apply(parts[:, 0], parts[:, 1], cos, sin)
    v = qkv.view(patches, 3, heads, dim)[:, 2]
    out = batched_attention(q, k, v, lengths.of(cu_seqlens), module.scaling)
    return module.proj(out.reshape(patches, heads * dim))


def _quick_gelu(x: Any) -> Any:
    """transformers' QuickGELUActivation.forward, fused (the MLP's own buffer, in place)."""
    return quick_gelu_(x.contiguous())


def _is_vision_attention(module: Any) -> bool:
    return (
        type(module).__name__.endswith("VisionAttention")
        and hasattr(module, "qkv")
        and hasattr(module, "proj")
        and hasattr(module, "num_heads")
        and hasattr(module, "scaling")
    )


def use_packed_vision(model: Any) -> int:
    """Switches the vision tower to the packed attention (and, on Qwen2-VL with Triton, the
    fused QuickGELU); returns how many attention modules were switched."""
    visual = getattr(getattr(model, "model", model), "visual", None) or model  # or a tower
    device = next(model.parameters()).device
    kernels = triton is not None and triton_runs(device)
    lengths = _Lengths()
    switched = 0
    for module in visual.modules():
        if _is_vision_attention(module):
            module.forward = partial(
                packed_attention, module, lengths=lengths, rotary_kernel=kernels
            )
            switched += 1
        act = getattr(module, "act", None)
        if kernels and act is not None and type(act).__name__ == "QuickGELUActivation":
            act.forward = _quick_gelu
    return switched
