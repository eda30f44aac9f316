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

from app.engines.local.engine import LocalEngine  # noqa: E402
from app.engines.local.options import LocalOptions  # noqa: E402
from bench.draft import images  # noqa: E402
from tests.support.random_model import build  # noqa: E402


def main() -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=["2b", "7b"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=64, help="new tokens in the profiled call")
    ap.add_argument("--rows", type=int, default=15)
    ap.add_argument("--compile", action="store_true", help="torch.compile the decode step")
    ap.add_argument(
        "--step-only",
        action="store_true",
        help="profile the decode step alone, run eagerly (no graph), to see its kernels",
    )
    args = ap.parse_args()
    model, processor = build(
        args.shape, device="cuda", dtype=torch.bfloat16, max_pixels=1024 * 1024
    )
    engine = LocalEngine(
        model,
        processor,
        batch_size=args.batch,
        max_new_tokens=args.steps,
        compile_step=args.compile,
        options=LocalOptions(min_steps=args.steps),
    )
    inputs = images(args.batch)
    engine.draft(inputs)  # captures this batch size's step
    torch.cuda.synchronize()
    decoder = engine.decoder
    slot = decoder.slots[args.batch]
    step = decoder.step_fn or decoder._forward
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        if args.step_only:
            with torch.inference_mode():
                for _ in range(args.steps):
                    slot.write_at.fill_(slot.capacity - 2)
                    step(slot)
        else:
            engine.draft(inputs)
        torch.cuda.synchronize()
    table = prof.key_averages()
    if args.step_only:
        # Each kernel counted once, under the operator that launched it.
        cpu_ops = [e for e in table if e.device_type.name == "CPU"]
        kernels = sum(e.self_device_time_total for e in cpu_ops)
        launched = sum(e.count for e in table if e.device_type.name != "CPU")
        print(
            f"per step: kernel time {kernels / args.steps / 1000:.3f} ms, "
            f"{launched / args.steps:.0f} kernels",
            flush=True,
        )
    print(table.table(sort_by="cuda_time_total", row_limit=args.rows), flush=True)
    print(table.table(sort_by="self_cpu_time_total", row_limit=args.rows), flush=True)


if __name__ == "__main__":
    main()
