"""What fills the GPU at a batch's peak: the engine's memory, by the code that allocated it.

The automatic batch doubles while the measured peak allows (engine.py, `_measured`), so
whatever a batch holds beyond the weights and the KV cache decides how many images a batch
drafts. This drafts one warm batch of `--batch` images with PyTorch's allocator recording
every allocation and its Python stack, then walks the record to the moment of the peak and
prints one JSON line per result:

- "held": what was allocated before the batch began: the weights, each decode slot's KV
  cache, and the rest;
- "peak": the peak (the allocator's own figure and the record's), and the allocations live
  at that moment that the batch made, summed by the innermost line of Atelier's or
  transformers' code that made them (the top 25), with the stage they belong to;
- "attention": the text model's prefill attention at this batch's shapes (queries over the
  whole cache, the key and value heads repeated, a boolean mask, as transformers' sdpa path
  calls it), run under each of PyTorch's attention kernels alone: which run, and each one's
  extra memory and time at `--attention-rows` rows (the first call, and the best of three
  after it); then the same for the prompt's attention (`prompt_` keys: the keys cut to the
  prompt's columns, causal, no mask, the key and value heads shared).

    python bench/memory_peak.py qwen3-8b --batch 64 [--models ../shared/models]

On the CPU (`tiny`) the record is not kept: a smoke run of the drafting and the layout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.engines.local.engine import LocalEngine  # noqa: E402
from bench.draft import (  # noqa: E402
    NEW_TOKENS,
    QWEN3,
    fixed_length_engine,
    images,
    load_model,
    timed,
)
from tests.support.random_model import REAL_MODELS  # noqa: E402

GB = 1e9
OURS = ("/app/", "/transformers/", "/bench/")


def where(frames: list[dict[str, Any]]) -> str:
    """The innermost frame in Atelier's or transformers' code, as `path:line function`."""
    for frame in frames:
        name = frame.get("filename", "")
        for mark in OURS:
            if mark in name:
                short = name[name.rindex(mark) + 1 :]
                return f"{short}:{frame.get('line')} {frame.get('name')}"
    return "(torch)" if frames else "(no stack)"


def peak_live(trace: list[dict[str, Any]]) -> tuple[int, dict[int, dict[str, Any]]]:
    """The largest net growth over the record and the allocations made in it and live then."""
    frees = (
        {"free_completed"}
        if any(e["action"] == "free_completed" for e in trace)
        else {"free_requested"}
    )
    live: dict[int, dict[str, Any]] = {}
    now = best = 0
    at_best: dict[int, dict[str, Any]] = {}
    for event in trace:
        action = event["action"]
        if action == "alloc":
            live[event["addr"]] = event
            now += event["size"]
            if now > best:
                best, at_best = now, dict(live)
        elif action in frees:
            live.pop(event["addr"], None)
            now -= event["size"]
    return best, at_best


def held(engine: LocalEngine) -> dict[str, float]:
    import torch

    model = engine.model
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    caches = {}
    for size, slot in engine.decoder.slots.items():
        total = 0
        for layer in slot.cache.layers:
            for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                if t is not None:
                    total += t.numel() * t.element_size()
        caches[str(size)] = round(total / GB, 2)
    allocated = torch.cuda.memory_allocated()
    return {
        "allocated_GB": round(allocated / GB, 2),
        "weights_GB": round(weights / GB, 2),
        "kv_cache_GB_by_batch": caches,
        "rest_GB": round((allocated - weights - sum(caches.values()) * GB) / GB, 2),
    }


def attention_kernels(engine: LocalEngine, batch: int, rows: int) -> dict[str, Any]:
    """The prefill's attention at this batch's shapes, under each kernel alone, `rows` rows."""
    import torch
    from torch.nn.attention import SDPBackend

    config = engine.model.config
    text = getattr(config, "text_config", config)
    heads, kv_heads = text.num_attention_heads, text.num_key_value_heads
    dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    prepared = engine._prepare(images(1, engine.convention))
    length = int(prepared["input_ids"].shape[1])
    capacity = engine.decoder.slots[batch].capacity if batch in engine.decoder.slots else 0
    capacity = capacity or length + NEW_TOKENS
    dtype = engine.model.dtype
    q = torch.randn(rows, heads, length, dim, device="cuda", dtype=dtype)
    kv = torch.randn(rows, kv_heads, capacity, dim, device="cuda", dtype=dtype)
    k = v = kv[:, :, None].expand(rows, kv_heads, heads // kv_heads, capacity, dim)
    k = v = k.reshape(rows, heads, capacity, dim)  # repeat_kv's copy
    mask = torch.ones(length, capacity, device="cuda", dtype=torch.bool).tril(capacity - length)
    mask = mask[None, None].expand(rows, 1, length, capacity).clone()
    mask[:, :, :, :7] = False  # seven columns of padding, as a left-padded row has
    out: dict[str, Any] = {
        "rows": rows,
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": dim,
        "prompt_tokens": length,
        "cache_capacity": capacity,
        "repeated_kv_GB_per_row_per_layer": round(2 * k[0].numel() * k.element_size() / GB, 4),
    }
    kernels = {"default": None}
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
        if hasattr(SDPBackend, name):
            kernels[name.lower()] = getattr(SDPBackend, name)
    # The prompt's attention (attention.py): padded on the right, keys cut to the prompt's
    # columns, causal, no mask, the KV heads shared (no repeat_kv copy).
    prompt_kv = kv[:, :, :length]

    def masked() -> Any:
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def causal() -> Any:
        return torch.nn.functional.scaled_dot_product_attention(
            q, prompt_kv, prompt_kv, is_causal=True, enable_gqa=heads != kv_heads
        )

    for prefix, call in (("", masked), ("prompt_", causal)):
        for name, kernel in kernels.items():
            out[prefix + name] = _timed_kernel(call, kernel, rows)
    return out


def _timed_kernel(call: Any, kernel: Any, rows: int) -> dict[str, Any]:
    """One attention call under `kernel` alone (None: PyTorch's choice): the first call's
    time (cold), the best of three after it, and the memory it adds a row."""
    import torch
    from torch.nn.attention import sdpa_kernel

    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    try:
        for _ in range(4):
            t = time.perf_counter()
            if kernel is None:
                got = call()
            else:
                with sdpa_kernel([kernel]):
                    got = call()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
            del got
    except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
        return {"error": str(e).splitlines()[0][:200]}
    return {
        "ms": round(times[0] * 1e3, 2),
        "warm_ms": round(min(times[1:]) * 1e3, 3),
        "extra_GB_per_row": round((torch.cuda.max_memory_allocated() - base) / rows / GB, 4),
    }


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=["2b", "7b", *QWEN3, "tiny"], help="tiny: CPU smoke run")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--tokenizer", choices=["byte", "bpe", "qwen"], default="qwen")
    ap.add_argument("--models", type=Path, default=REAL_MODELS, help="real Qwen files")
    ap.add_argument("--attention-rows", type=int, default=8)
    ap.add_argument("--prefill-rows", type=int, default=0, help="prompts written N rows a forward")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    print(
        json.dumps(
            {
                "kind": "setup",
                "shape": args.shape,
                "batch": args.batch,
                "prefill_rows": args.prefill_rows or "all",
                "gpu": torch.cuda.get_device_name(0) if cuda else "cpu",
                "torch": torch.__version__,
                "new_tokens": NEW_TOKENS,
            }
        ),
        flush=True,
    )
    model, processor = load_model(args.shape, args.tokenizer, args.models)
    engine = fixed_length_engine(model, processor, args.batch, args.prefill_rows)
    inputs = images(args.batch, engine.convention)
    warm = timed(engine, inputs)  # the slot, its cache and graphs made
    if not cuda:
        print(json.dumps({"kind": "smoke", "warm_s": round(warm, 2)}), flush=True)
        engine.close()
        return
    torch.cuda.empty_cache()
    print(json.dumps({"kind": "held", "warm_s": round(warm, 2)} | held(engine)), flush=True)
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.memory._record_memory_history(max_entries=500_000, stacks="python")
    seconds = timed(engine, inputs)
    snapshot = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    peak = torch.cuda.max_memory_allocated()
    trace = [e for device in snapshot["device_traces"] for e in device]
    grown, live = peak_live(trace)
    by_line: dict[str, int] = defaultdict(int)
    for event in live.values():
        by_line[where(event.get("frames", []))] += event["size"]
    top = sorted(by_line.items(), key=lambda kv: -kv[1])[: args.top]
    print(
        json.dumps(
            {
                "kind": "peak",
                "batch": args.batch,
                "prefill_rows": args.prefill_rows or "all",
                "s": round(seconds, 3),
                "images_per_s": round(args.batch / seconds, 3),
                "before_GB": round(before / GB, 2),
                "peak_GB": round(peak / GB, 2),
                "record_peak_GB": round((before + grown) / GB, 2),
                "events": len(trace),
                "live_at_peak": len(live),
                "by_line_GB": {k: round(v / GB, 3) for k, v in top},
                "per_image_GB": round((peak - before) / args.batch / GB, 4),
            }
        ),
        flush=True,
    )
    rows = min(args.attention_rows, args.batch)
    print(json.dumps({"kind": "attention"} | attention_kernels(engine, args.batch, rows)))
    engine.close()


if __name__ == "__main__":
    main()
