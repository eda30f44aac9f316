"""Where a draft's time goes on the GPU: profiler tables for one engine call.

Runs Atelier's local engine on a random-weight Qwen2-VL shape (as bench/draft.py does), warms
the batch size, then profiles one call and prints the costliest operations by GPU time and
by CPU time. For choosing what to speed up next, not a measurement to report.

    python bench/draft_profile.py 2b --batch 1 [--steps 64]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.drafting.local import LocalEngine  # noqa: E402
from app.drafting.random_model import build  # noqa: E402
from bench.draft import images  # noqa: E402


def main() -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=["2b", "7b"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=64, help="new tokens in the profiled call")
    ap.add_argument("--rows", type=int, default=15)
    args = ap.parse_args()
    model, processor = build(
        args.shape, device="cuda", dtype=torch.bfloat16, max_pixels=1024 * 1024
    )
    engine = LocalEngine(
        model, processor, batch_size=args.batch, max_new_tokens=args.steps, min_steps=args.steps
    )
    inputs = images(args.batch)
    engine.draft(inputs)  # captures this batch size's step
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        engine.draft(inputs)
        torch.cuda.synchronize()
    table = prof.key_averages()
    print(table.table(sort_by="cuda_time_total", row_limit=args.rows), flush=True)
    print(table.table(sort_by="self_cpu_time_total", row_limit=args.rows), flush=True)


if __name__ == "__main__":
    main()
