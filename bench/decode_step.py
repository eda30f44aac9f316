"""The decode step alone: graph replays timed back to back, without the loop around them.

Tells a step's GPU cost apart from the loop around it (argmax, grammar masks, host copies),
for each attention the lean step can use (app/drafting/text_step.py): "triton" is Atelier's
kernels (app/drafting/kernels.py).

    python bench/decode_step.py 2b [--batches 1,32] [--compile]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.engines.local import kernels  # noqa: E402
from app.engines.local.engine import LocalEngine  # noqa: E402
from app.engines.local.options import LocalOptions  # noqa: E402
from bench.draft import images  # noqa: E402
from tests.support.random_model import build  # noqa: E402


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=["2b", "7b"])
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--replays", type=int, default=200)
    ap.add_argument("--compile", action="store_true", help="also the compiled step")
    ap.add_argument("--attentions", default="triton,matmul,sdpa")
    ap.add_argument(
        "--keys-per-program", type=int, default=0, help="the attention kernel's cache stretch"
    )
    args = ap.parse_args()
    if args.keys_per_program:
        kernels.KEYS_PER_PROGRAM = args.keys_per_program
    model, processor = build(args.shape, device="cuda", dtype=torch.bfloat16)
    attentions = args.attentions.split(",")
    variants = [(a, False) for a in attentions] + [(a, True) for a in attentions] * args.compile
    for attention, compiled in variants:
        for batch in (int(b) for b in args.batches.split(",")):
            engine = LocalEngine(
                model,
                processor,
                batch_size=batch,
                max_new_tokens=args.replays + 8,
                compile_step=compiled,
                options=LocalOptions(min_steps=8),
            )
            engine.decoder.attention_for = lambda _, a=attention: a
            engine.draft(images(batch))  # captures the step
            slot = engine.decoder.slots[batch]
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            for _ in range(3):
                # Each replay writes one cache column further: start where all of them fit.
                slot.write_at.fill_(slot.capacity - args.replays - 1)
                torch.cuda.synchronize()
                start.record()
                for _ in range(args.replays):
                    slot.graph.replay()
                end.record()
                torch.cuda.synchronize()
            row = {
                "compiled": compiled,
                "attention": attention,
                "batch": batch,
                "graph_ms": round(start.elapsed_time(end) / args.replays, 3),
                "keys_per_program": kernels.KEYS_PER_PROGRAM,
                "kernel_products": sorted(engine.decoder.text_step.products.get(batch, ())),
                "gpu": torch.cuda.get_device_name(0),
            }
            print(json.dumps(row), flush=True)
            engine.decoder.slots.clear()


if __name__ == "__main__":
    main()
