"""Triton kernels for the decode step at small batches (app/drafting/text_step.py).

At batch 1 a step of Qwen2-VL-2B is bound by kernel count, not by the weights: its torch
ops spend 27 kernels a layer where the four matrix products are what must be read. These
kernels take the small ones over, and some of the products:

- `rope_into_cache`: rope on q and k and the new key and value written into the static
  cache at the step's column, one kernel for what torch does in about twelve;
- `decode_attention`: one query token over the cache, split along the cache (each program
  takes one KV head's query heads over a stretch of keys, with an online softmax), then
  one small kernel that merges the stretches. It replaces two matrix products, the mask
  add, the softmax and a cast. It reads the cache's keys and values only up to the last
  column written (`last`): a slot's cache is sized for the prompt and every new token, so
  at a step a fifth to a half of its columns are still empty (at Qwen3-VL-8B's batch 64,
  reading all 2,048 columns was 19.3 GB a step, about 5.8 ms at an H100's 3.35 TB/s);
- `silu_mul`: silu(gate) * up from the fused gate/up product;
- `linear`: a product of up to 16 rows with the norm before it, its bias and the residual
  add inside (and silu(gate) * up before it, or K split, where asked). `TextStep` uses it
  for the products where timing finds it faster than cuBLAS: on an H100, 2B's q/k/v, o,
  gate/up and lm_head at batch 1, and only 7B's lm_head.

A 2B step at batch 1 on an H100: 1.94 ms with them, 3.16 ms with torch's ops.

Arithmetic is float32 inside each kernel, with bfloat16 (or the model's dtype) in and out.
`available()` says whether they can run here: a CUDA device and Triton, or Triton's CPU
interpreter (TRITON_INTERPRET=1, which the tests use on machines without a GPU).
"""

from __future__ import annotations

import os
from typing import Any

try:
    import triton
    import triton.language as tl
except ImportError:  # the step keeps its torch ops
    triton = None

# The stretch of the cache one attention program covers: short stretches, many programs.
# Graph-replayed 2B step on an H100 at batch 1 / 8 / 31 (bench/decode_step.py): 256 keys
# 1.993 / 2.098 / 2.830 ms, 128 keys 1.952 / 2.124 / 2.813, 64 keys 1.942 / 2.105 / 2.768.
KEYS_PER_PROGRAM = 64
KEY_BLOCK = 64  # keys loaded at once; divides KEYS_PER_PROGRAM and the cache's length step


def available(device: Any) -> bool:
    if triton is None:
        return False
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True
    return getattr(device, "type", str(device)) == "cuda"


def fits(*, head_dim: int, capacity: int) -> bool:
    """Whether the kernels take this shape: a power-of-two head size, a cache in whole
    stretches."""
    return head_dim & (head_dim - 1) == 0 and head_dim >= 16 and capacity % KEYS_PER_PROGRAM == 0


if triton is not None:

    @triton.jit
    def _rope_into_cache_kernel(
        q_ptr,
        k_ptr,
        v_ptr,
        q_row,
        k_row,
        v_row,
        cos_ptr,
        sin_ptr,
        position_ptr,
        column_ptr,
        q_out_ptr,
        keys_ptr,
        values_ptr,
        cache_batch,
        cache_head,
        cache_pos,
        HEADS: tl.constexpr,
        KV_HEADS: tl.constexpr,
        D: tl.constexpr,
    ):
        b = tl.program_id(0)
        h = tl.program_id(1)  # q heads, then k heads, then v heads
        offs = tl.arange(0, D)
        half = D // 2
        column = tl.load(column_ptr)
        if h < HEADS + KV_HEADS:
            position = tl.load(position_ptr + b)
            cos = tl.load(cos_ptr + position * D + offs).to(tl.float32)
            sin = tl.load(sin_ptr + position * D + offs).to(tl.float32)
            partner = tl.where(offs < half, offs + half, offs - half)
            sign = tl.where(offs < half, -1.0, 1.0)
            if h < HEADS:  # noqa: SIM108 (Triton takes an if on a runtime value, not a ternary)
                row = q_ptr + b * q_row + h * D
            else:
                row = k_ptr + b * k_row + (h - HEADS) * D
            x = tl.load(row + offs).to(tl.float32)
            rotated = tl.load(row + partner).to(tl.float32) * sign
            y = x * cos + rotated * sin
            if h < HEADS:
                tl.store(q_out_ptr + (b * HEADS + h) * D + offs, y.to(q_out_ptr.dtype.element_ty))
            else:
                at = b * cache_batch + (h - HEADS) * cache_head + column * cache_pos
                tl.store(keys_ptr + at + offs, y.to(keys_ptr.dtype.element_ty))
        else:
            kv = h - HEADS - KV_HEADS
            value = tl.load(v_ptr + b * v_row + kv * D + offs)
            at = b * cache_batch + kv * cache_head + column * cache_pos
            tl.store(values_ptr + at + offs, value.to(values_ptr.dtype.element_ty))

    @triton.jit
    def _attention_part_kernel(
        q_ptr,
        keys_ptr,
        values_ptr,
        mask_ptr,
        last_ptr,
        out_ptr,
        max_ptr,
        sum_ptr,
        scale,
        cache_batch,
        cache_head,
        cache_pos,
        mask_batch,
        HEADS: tl.constexpr,
        KV_HEADS: tl.constexpr,
        GROUP: tl.constexpr,
        GROUP_PAD: tl.constexpr,
        D: tl.constexpr,
        PARTS: tl.constexpr,
        KEYS: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        bk = tl.program_id(0)  # batch row * KV_HEADS + kv head
        part = tl.program_id(1)
        b = bk // KV_HEADS
        kv = bk % KV_HEADS
        g = tl.arange(0, GROUP_PAD)
        d = tl.arange(0, D)
        live = g < GROUP
        head = kv * GROUP + g
        q = tl.load(
            q_ptr + (b * HEADS + head)[:, None] * D + d[None, :], mask=live[:, None], other=0.0
        )
        base = b * cache_batch + kv * cache_head
        last = tl.load(last_ptr)  # the last column any row attends
        best = tl.full((GROUP_PAD,), float("-inf"), tl.float32)
        total = tl.zeros((GROUP_PAD,), tl.float32)
        acc = tl.zeros((GROUP_PAD, D), tl.float32)
        for start in range(0, KEYS, BLOCK):
            n = part * KEYS + start + tl.arange(0, BLOCK)
            read = n <= last  # columns after it are not read from memory at all
            k = tl.load(
                keys_ptr + base + n[:, None] * cache_pos + d[None, :], mask=read[:, None], other=0.0
            )
            # Masked columns hold the dtype's minimum (or -inf): kept finite, so that a stretch
            # with no attended key merges with weight 0 instead of NaN.
            add = tl.load(mask_ptr + b * mask_batch + n, mask=read, other=-1.0e30)
            add = tl.maximum(add.to(tl.float32), -1.0e30)
            scores = tl.dot(q, tl.trans(k), input_precision="ieee") * scale + add[None, :]
            new_best = tl.maximum(best, tl.max(scores, 1))
            p = tl.exp(scores - new_best[:, None])
            keep = tl.exp(best - new_best)
            total = total * keep + tl.sum(p, 1)
            v = tl.load(
                values_ptr + base + n[:, None] * cache_pos + d[None, :],
                mask=read[:, None],
                other=0.0,
            )
            acc = acc * keep[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
            best = new_best
        at = (b * HEADS + head) * PARTS + part
        tl.store(out_ptr + at[:, None] * D + d[None, :], acc, mask=live[:, None])
        tl.store(max_ptr + at, best, mask=live)
        tl.store(sum_ptr + at, total, mask=live)

    @triton.jit
    def _attention_merge_kernel(
        part_ptr,
        max_ptr,
        sum_ptr,
        out_ptr,
        PARTS: tl.constexpr,
        PARTS_PAD: tl.constexpr,
        D: tl.constexpr,
    ):
        bh = tl.program_id(0)  # batch row * HEADS + head
        s = tl.arange(0, PARTS_PAD)
        d = tl.arange(0, D)
        live = s < PARTS
        best = tl.load(max_ptr + bh * PARTS + s, mask=live, other=float("-inf"))
        total = tl.load(sum_ptr + bh * PARTS + s, mask=live, other=0.0)
        top = tl.max(best, 0)
        weight = tl.where(live, tl.exp(best - top), 0.0)
        part = tl.load(
            part_ptr + (bh * PARTS + s)[:, None] * D + d[None, :], mask=live[:, None], other=0.0
        )
        out = tl.sum(part * weight[:, None], 0) / tl.sum(total * weight, 0)
        tl.store(out_ptr + bh * D + d, out.to(out_ptr.dtype.element_ty))

    @triton.jit
    def _silu_mul_kernel(gate_up_ptr, out_ptr, row, WIDTH: tl.constexpr, BLOCK: tl.constexpr):
        b = tl.program_id(0)
        i = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        live = i < WIDTH
        gate = tl.load(gate_up_ptr + b * row + i, mask=live).to(tl.float32)
        up = tl.load(gate_up_ptr + b * row + WIDTH + i, mask=live).to(tl.float32)
        out = gate / (1.0 + tl.exp(-gate)) * up
        tl.store(out_ptr + b * WIDTH + i, out.to(out_ptr.dtype.element_ty), mask=live)


if triton is not None:

    @triton.jit
    def _linear_kernel(
        x_ptr,
        w_ptr,
        bias_ptr,
        residual_ptr,
        norm_ptr,
        out_ptr,
        part_ptr,
        rows,
        N,
        K,
        x_row,
        eps,
        chunk,
        ROWS: tl.constexpr,
        HAS_BIAS: tl.constexpr,
        HAS_RESIDUAL: tl.constexpr,
        HAS_NORM: tl.constexpr,
        GATED: tl.constexpr,
        SPLIT: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        EVEN_K: tl.constexpr,
    ):
        n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        r = tl.arange(0, ROWS)
        live_r = r < rows
        live_n = n < N
        if HAS_NORM:  # each program sums the squares of the (short) rows itself
            squares = tl.zeros((ROWS,), tl.float32)
            for k0 in range(0, K, BLOCK_K):
                k = k0 + tl.arange(0, BLOCK_K)
                live = live_r[:, None] & (k < K)[None, :]
                x = tl.load(x_ptr + r[:, None] * x_row + k[None, :], mask=live, other=0.0)
                x = x.to(tl.float32)
                squares += tl.sum(x * x, 1)
            scale = tl.rsqrt(squares / K + eps)
        # With SPLIT > 1 each program takes a `chunk` of K, and `_linear_sum_kernel` adds up.
        start = tl.program_id(1) * chunk
        stop = tl.minimum(start + chunk, K)
        acc = tl.zeros((ROWS, BLOCK_N), tl.float32)
        for k0 in range(start, stop, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            # Where every chunk is whole blocks, no mask along K: the loads stay vectorised.
            inside = (k < stop) | EVEN_K
            live = live_r[:, None] & inside[None, :]
            x = tl.load(x_ptr + r[:, None] * x_row + k[None, :], mask=live, other=0.0)
            if GATED:  # x is [gate | up]: the product's input is silu(gate) * up
                up = tl.load(x_ptr + r[:, None] * x_row + K + k[None, :], mask=live, other=0.0)
                gate = x.to(tl.float32)
                x = (gate / (1.0 + tl.exp(-gate)) * up.to(tl.float32)).to(w_ptr.dtype.element_ty)
            if HAS_NORM:
                weight = tl.load(norm_ptr + k, mask=inside, other=0.0)
                x = (x.to(tl.float32) * scale[:, None]).to(w_ptr.dtype.element_ty) * weight[None, :]
            w = tl.load(
                w_ptr + n[:, None] * K + k[None, :],
                mask=live_n[:, None] & inside[None, :],
                other=0.0,
            )
            acc += tl.dot(x.to(w.dtype), tl.trans(w), input_precision="ieee")
        at = r[:, None] * N + n[None, :]
        live = live_r[:, None] & live_n[None, :]
        if SPLIT > 1:
            tl.store(part_ptr + tl.program_id(1) * rows * N + at, acc, mask=live)
        else:
            if HAS_BIAS:
                acc += tl.load(bias_ptr + n, mask=live_n, other=0.0).to(tl.float32)[None, :]
            if HAS_RESIDUAL:
                acc += tl.load(residual_ptr + at, mask=live, other=0.0).to(tl.float32)
            tl.store(out_ptr + at, acc.to(out_ptr.dtype.element_ty), mask=live)

    @triton.jit
    def _linear_sum_kernel(
        part_ptr,
        bias_ptr,
        residual_ptr,
        out_ptr,
        rows,
        N,
        HAS_BIAS: tl.constexpr,
        HAS_RESIDUAL: tl.constexpr,
        SPLIT: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        r = tl.program_id(0)
        n = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        live = n < N
        acc = tl.zeros((BLOCK,), tl.float32)
        for s in tl.static_range(SPLIT):
            acc += tl.load(part_ptr + (s * rows + r) * N + n, mask=live, other=0.0)
        if HAS_BIAS:
            acc += tl.load(bias_ptr + n, mask=live, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            acc += tl.load(residual_ptr + r * N + n, mask=live, other=0.0).to(tl.float32)
        tl.store(out_ptr + r * N + n, acc.to(out_ptr.dtype.element_ty), mask=live)


# Up to this many rows the step's products may run in `linear` (which ones: `TextStep`
# times both ways on the first step of a batch size); from 17 rows on cuBLAS was as fast or
# faster for all of them (bench/linear_kernel.py, H100).
LINEAR_ROWS = 16

Config = tuple[int, int, int, int, int]  # BLOCK_N, BLOCK_K, num_warps, num_stages, split


def linear_config(n: int, k: int, rows: int) -> Config:
    """The block shape for a product of `rows` rows: wide products (gate/up, lm_head) in
    wide blocks, narrow ones in narrow blocks, and a long K split, for enough programs."""
    if n >= 8192:
        return (64, 128, 8, 3, 1)
    if k >= 4 * n:  # down
        return (16, 256, 4, 3, 4)
    if n > k:  # q/k/v
        return (64, 128, 8, 3, 4)
    return (16, 512, 4, 3, 1)


def linear(
    x: Any,
    weight: Any,
    *,
    bias: Any = None,
    residual: Any = None,
    norm: Any = None,
    eps: float = 1e-6,
    gated: bool = False,
    out_dtype: Any = None,
    out: Any = None,
    config: Config | None = None,
) -> Any:
    """residual + f(x) @ weight.T + bias, for a few rows (a decode step's batch).

    f is rms_norm with weight `norm` (the layer's norm before the product) when given; with
    `gated`, x is the fused [gate | up] and f(x) is silu(gate) * up. x (rows, K or 2K) and
    weight (N, K) are row-major; `out`, if given, a contiguous (rows, N) to write into.
    """
    import torch

    rows, n, k = x.shape[0], weight.shape[0], weight.shape[1]
    if out is None:
        out = torch.empty((rows, n), dtype=out_dtype or weight.dtype, device=x.device)
    block_n, block_k, warps, stages, split = config or linear_config(n, k, rows)
    block_k = max(16, block_k * 2 // weight.element_size())  # the same bytes for float32
    chunk = triton.cdiv(triton.cdiv(k, split), block_k) * block_k
    split = triton.cdiv(k, chunk)
    part = torch.empty((split, rows, n), dtype=torch.float32, device=x.device) if split > 1 else out
    _linear_kernel[(triton.cdiv(n, block_n), split)](
        x,
        weight,
        bias if bias is not None else weight,
        residual if residual is not None else out,
        norm if norm is not None else weight,
        out,
        part,
        rows,
        n,
        k,
        x.stride(0),
        eps,
        chunk,
        ROWS=max(16, triton.next_power_of_2(rows)),
        HAS_BIAS=bias is not None,
        HAS_RESIDUAL=residual is not None,
        HAS_NORM=norm is not None,
        GATED=gated,
        SPLIT=split,
        BLOCK_N=block_n,
        BLOCK_K=block_k,
        EVEN_K=chunk % block_k == 0 and k % block_k == 0,
        num_warps=warps,
        num_stages=stages,
    )
    if split > 1:
        _linear_sum_kernel[(rows, triton.cdiv(n, 1024))](
            part,
            bias if bias is not None else weight,
            residual if residual is not None else out,
            out,
            rows,
            n,
            HAS_BIAS=bias is not None,
            HAS_RESIDUAL=residual is not None,
            SPLIT=split,
            BLOCK=1024,
        )
    return out


def rope_into_cache(
    q: Any, k: Any, v: Any, cos: Any, sin: Any, position: Any, column: Any, cache: Any
) -> Any:
    """Roped q (batch, heads, d); writes roped k and v at `column` of the layer's cache.

    q, k and v are (batch, heads, d) with unit stride inside a row (views into the fused
    projection are fine); cos and sin are the rope tables (positions, d); `position` (batch,)
    is each row's position and `column` (1,) the cache column.
    """
    import torch

    batch, heads, d = q.shape
    kv_heads = k.shape[1]
    keys, values = cache.keys, cache.values
    out = torch.empty((batch, heads, d), dtype=q.dtype, device=q.device)
    _rope_into_cache_kernel[(batch, heads + 2 * kv_heads)](
        q,
        k,
        v,
        q.stride(0),
        k.stride(0),
        v.stride(0),
        cos,
        sin,
        position,
        column,
        out,
        keys,
        values,
        keys.stride(0),
        keys.stride(1),
        keys.stride(2),
        HEADS=heads,
        KV_HEADS=kv_heads,
        D=d,
    )
    return out


def decode_attention(
    q: Any, keys: Any, values: Any, mask: Any, scale: float, last: Any = None
) -> Any:
    """softmax(q k^T * scale + mask) v for one query token a row: (batch, heads * d).

    q is (batch, heads, d); keys and values (batch, kv_heads, capacity, d), heads a multiple
    of kv_heads; mask (batch, 1, 1, capacity), additive; `last` (1,) on the device, the
    last column any row attends (the step's own column): the columns after it are left
    unread, as if masked. None: every column.
    """
    import torch

    batch, heads, d = q.shape
    kv_heads, capacity = keys.shape[1], keys.shape[2]
    if last is None:
        last = torch.full((1,), capacity - 1, dtype=torch.long, device=q.device)
    group = heads // kv_heads
    parts = capacity // KEYS_PER_PROGRAM
    part_out = torch.empty((batch * heads * parts, d), dtype=torch.float32, device=q.device)
    part_max = torch.empty(batch * heads * parts, dtype=torch.float32, device=q.device)
    part_sum = torch.empty_like(part_max)
    _attention_part_kernel[(batch * kv_heads, parts)](
        q,
        keys,
        values,
        mask,
        last,
        part_out,
        part_max,
        part_sum,
        scale,
        keys.stride(0),
        keys.stride(1),
        keys.stride(2),
        mask.stride(0),
        HEADS=heads,
        KV_HEADS=kv_heads,
        GROUP=group,
        GROUP_PAD=max(16, triton.next_power_of_2(group)),  # tl.dot's smallest tile
        D=d,
        PARTS=parts,
        KEYS=KEYS_PER_PROGRAM,
        BLOCK=KEY_BLOCK,
    )
    out = torch.empty((batch, heads * d), dtype=q.dtype, device=q.device)
    _attention_merge_kernel[(batch * heads,)](
        part_out,
        part_max,
        part_sum,
        out,
        PARTS=parts,
        PARTS_PAD=triton.next_power_of_2(parts),
        D=d,
    )
    return out


def silu_mul(gate_up: Any) -> Any:
    """silu(gate) * up, where gate_up (batch, 2 * width) is the fused product."""
    import torch

    batch, width = gate_up.shape[0], gate_up.shape[1] // 2
    out = torch.empty((batch, width), dtype=gate_up.dtype, device=gate_up.device)
    block = 1024
    _silu_mul_kernel[(batch, triton.cdiv(width, block))](
        gate_up, out, gate_up.stride(0), WIDTH=width, BLOCK=block
    )
    return out
