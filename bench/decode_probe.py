"""Probe: how fast can one decode step of Qwen2-VL (random 2B/7B) run on this GPU?

Not the engine: a measurement to choose how the engine's decode loop should work. After one
prefill into a static KV cache, it times the one-token step three ways: eager, under
torch.compile(mode="reduce-overhead"), and replayed from a CUDA graph captured by hand with
static buffers (a 4D attention mask updated in place). Each prints ms a step at the batch.

    python bench/decode_probe.py 2b [--batch 32] [--steps 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.random_model import build  # noqa: E402


def main() -> None:
    import torch
    from transformers import StaticCache

    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=["2b", "7b"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--new", type=int, default=450)
    ap.add_argument("--grouped", action="store_true", help="Atelier's grouped-query attention")
    ap.add_argument("--kernels", action="store_true", help="print the costliest GPU kernels")
    ap.add_argument(
        "--no-mask", action="store_true", help="no attention mask: is the masked path the cost?"
    )
    args = ap.parse_args()
    model, processor = build(args.shape, device="cuda", dtype=torch.bfloat16)
    cfg = model.config
    if args.grouped:
        from app.engines.local.attention import use_grouped_attention

        use_grouped_attention(model)
    B, grid, prompt = args.batch, 74, 300
    n_img = grid * grid // 4
    ids = [cfg.vision_start_token_id] + [cfg.image_token_id] * n_img + [cfg.vision_end_token_id]
    ids += [65 + (i % 26) for i in range(prompt)]
    input_ids = torch.tensor([ids] * B, device="cuda")
    L = input_ids.shape[1]
    mm = (input_ids == cfg.image_token_id).int()
    inputs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(
            B * grid * grid, 3 * 2 * 14 * 14, device="cuda", dtype=torch.bfloat16
        ),
        "image_grid_thw": torch.tensor([[1, grid, grid]] * B, device="cuda"),
        "mm_token_type_ids": mm,
    }
    max_len = L + args.new
    out: dict = {
        "shape": args.shape,
        "batch": B,
        "prompt_tokens": L,
        "gpu": torch.cuda.get_device_name(0),
    }

    def prefill():  # type: ignore[no-untyped-def]
        cache = StaticCache(config=cfg, max_cache_len=max_len)
        with torch.inference_mode():
            o = model(**inputs, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return cache, o.logits[:, -1].argmax(-1)

    torch.cuda.synchronize()
    t = time.perf_counter()
    cache, tok = prefill()
    torch.cuda.synchronize()
    out["prefill_s"] = round(time.perf_counter() - t, 3)
    deltas = model.model.rope_deltas.view(1, B, 1)
    # A 4D additive mask over the whole static cache: 0 where attended, -inf elsewhere.
    mask = torch.full((B, 1, 1, max_len), float("-inf"), device="cuda", dtype=torch.bfloat16)
    mask[..., :L] = 0

    def forward(tok_: object, pos: object) -> object:
        return model(
            input_ids=tok_,
            position_ids=pos,
            attention_mask=None if args.no_mask else mask,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits

    def eager_step(t_: int):  # type: ignore[no-untyped-def]
        mask[..., L + t_] = 0
        pos = (torch.full((3, B, 1), L + t_, device="cuda") + deltas).long()
        with torch.inference_mode():
            return forward(tok.view(B, 1), pos)[:, -1].argmax(-1)  # type: ignore[index]

    for name, runner in (("eager", "eager"), ("cuda_graph", "graph")):
        try:
            cache, tok = prefill()
            mask.fill_(float("-inf"))
            mask[..., :L] = 0
            if runner == "eager":
                for i in range(3):
                    tok = eager_step(i)
                torch.cuda.synchronize()
                t = time.perf_counter()
                for i in range(3, 3 + args.steps):
                    tok = eager_step(i)
                torch.cuda.synchronize()
            else:
                static_tok = tok.view(B, 1).clone()
                static_pos = (torch.full((3, B, 1), L, device="cuda") + deltas).long()
                with torch.inference_mode():
                    s = torch.cuda.Stream()
                    s.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(s):  # warm-up outside the graph
                        for _ in range(2):
                            forward(static_tok, static_pos)
                    torch.cuda.current_stream().wait_stream(s)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        next_tok = forward(static_tok, static_pos)[:, -1].argmax(-1)  # type: ignore[index]
                torch.cuda.synchronize()
                t = time.perf_counter()
                for i in range(args.steps):
                    mask[..., L + 2 + i] = 0
                    static_pos.add_(1)
                    graph.replay()
                    static_tok.copy_(next_tok.view(B, 1))
                torch.cuda.synchronize()
            dt = time.perf_counter() - t
            out[f"{name}_ms_per_step"] = round(dt / args.steps * 1000, 2)
        except Exception as e:  # a probe reports what failed and goes on
            out[f"{name}_error"] = f"{type(e).__name__}: {str(e)[:300]}"
        print(json.dumps(out), flush=True)
    if args.kernels:
        from torch.profiler import ProfilerActivity, profile

        cache, tok = prefill()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for i in range(8):
                tok = eager_step(i)
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12), flush=True)
    out["attention"] = model.config._attn_implementation
    ms = out.get("cuda_graph_ms_per_step") or out.get("eager_ms_per_step")
    if ms:
        out["projected_images_per_s"] = round(B / (out["prefill_s"] + args.new * ms / 1000), 2)
    out["peak_GB"] = round(torch.cuda.max_memory_allocated() / 1e9, 1)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
