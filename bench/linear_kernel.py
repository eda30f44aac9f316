"""The decode step's small-batch products: Atelier's Triton kernel against torch's ops.

For each product of a Qwen2-VL layer at the 2B (or 7B) shape, as the step runs it (the norm
before the product, its bias, the residual add, silu(gate) * up), times torch's ops (the
fused rms_norm, cuBLAS through linear / addmm, the silu kernel) and the Triton kernel over
a sweep of block shapes, each as a CUDA graph of back-to-back calls. Prints the best
configuration per product and rows; for choosing `kernels.linear_config`.

    python bench/linear_kernel.py 2b [--rows 1,16,31]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.engines.local import kernels  # noqa: E402
from tests.support.random_model import SHAPES  # noqa: E402

CALLS = 20
L2_BYTES = 50 * 2**20  # an H100's


def graph_us(fn) -> float:  # type: ignore[no-untyped-def]
    """Microseconds a call, `fn(i)` called CALLS times in one CUDA graph."""
    import torch

    fn(0)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(CALLS):
            fn(i)
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(10):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / (10 * CALLS)


def measure(rows: int, name: str, spec: tuple, configs: list[kernels.Config]) -> dict:
    import torch

    F = torch.nn.functional
    n, k, has_bias, has_res, has_norm, gated, f32 = spec
    dev, bf = "cuda", torch.bfloat16
    # Enough copies of the weight that none stays in the L2 cache between its calls, as in
    # a real step, where each layer's weights are read once.
    copies = -(-L2_BYTES * 2 // (n * k * 2))
    weights = [torch.randn(n, k, dtype=bf, device=dev) / k**0.5 for _ in range(copies)]
    bias = torch.randn(n, dtype=bf, device=dev) if has_bias else None
    norm = torch.rand(k, dtype=bf, device=dev) + 0.5 if has_norm else None
    x = torch.randn(rows, 2 * k if gated else k, dtype=bf, device=dev)
    residual = torch.randn(rows, n, dtype=bf, device=dev) if has_res else None

    def torch_ops(i: int) -> object:
        weight = weights[i % copies]
        h = F.rms_norm(x, (k,), norm, 1e-6) if norm is not None else x
        if gated:
            h = kernels.silu_mul(h)
        if residual is not None:
            return torch.addmm(residual, h, weight.t())
        y = F.linear(h, weight, bias)
        return y.float() if f32 else y

    def ours(config: kernels.Config, i: int = 0) -> object:
        return kernels.linear(
            x,
            weights[i % copies],
            bias=bias,
            residual=residual,
            norm=norm,
            gated=gated,
            out_dtype=torch.float32 if f32 else None,
            config=config,
        )

    want = torch_ops(0)
    base = graph_us(torch_ops)
    timed = []
    for config in configs:
        try:
            got = ours(config)
        except Exception as e:  # a block shape that does not fit the shared memory
            if "OutOfResources" not in type(e).__name__:
                raise
            continue
        torch.testing.assert_close(got.float(), want.float(), rtol=0.05, atol=0.05)  # type: ignore[union-attr]
        timed.append((graph_us(lambda i, c=config: ours(c, i)), config))
    timed.sort()
    best_us, best = timed[0]
    chosen = kernels.linear_config(n, k, rows)
    default_us = next((t for t, c in timed if c == chosen), None)
    if default_us is None:
        default_us = graph_us(lambda i: ours(chosen, i))
    return {
        "rows": rows,
        "product": name,
        "N": n,
        "K": k,
        "torch_us": round(base, 2),
        "best_us": round(best_us, 2),
        "best": best,
        "default_us": round(default_us, 2),
        "GB_per_s_best": round(n * k * 2 / best_us / 1e3),
        "top3": [(round(t, 2), c) for t, c in timed[:3]],
    }


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=["2b", "7b"])
    ap.add_argument("--rows", default="1,16,31")
    ap.add_argument("--block-n", default="16,32,64")
    ap.add_argument("--block-k", default="128,256,512")
    ap.add_argument("--warps", default="4,8")
    ap.add_argument("--stages", default="3,4")
    ap.add_argument("--splits", default="1", help="chunks of K, added up after")
    ap.add_argument("--products", default="qkv,o,gate_up,down,lm_head")
    args = ap.parse_args()
    hidden, _, heads, kv, mlp, vocab, *_ = SHAPES[args.shape]
    d = hidden // heads
    torch.manual_seed(0)
    products = {  # name: (N, K, bias, residual, norm, gated, float32 out)
        "qkv": (hidden + 2 * kv * d, hidden, True, False, True, False, False),
        "o": (hidden, hidden, False, True, False, False, False),
        "gate_up": (2 * mlp, hidden, False, False, True, False, False),
        "down": (hidden, mlp, False, True, False, True, False),
        "lm_head": (vocab, hidden, False, False, True, False, True),
    }
    configs = list(
        itertools.product(
            *(
                [int(v) for v in a.split(",")]
                for a in (args.block_n, args.block_k, args.warps, args.stages, args.splits)
            )
        )
    )
    total: dict[int, list[float]] = {}
    for rows in (int(r) for r in args.rows.split(",")):
        for name, spec in products.items():
            if name not in args.products.split(","):
                continue
            row = measure(rows, name, spec, configs)
            total.setdefault(rows, [0.0, 0.0, 0.0])
            for i, key in enumerate(("torch_us", "best_us", "default_us")):
                total[rows][i] += row[key]
            print(json.dumps(row), flush=True)
    print(json.dumps({"per_layer_plus_lm_head_us (torch, best, default)": total}), flush=True)


if __name__ == "__main__":
    main()
