"""The prefill on a GPU: transformers' vision tower beside Atelier's packed one, in one call.

A random-weight Qwen-VL shape (as bench/draft.py builds it), 1024x1024 images prepared by
the engine. For each batch size: the vision tower alone, as transformers runs it and packed
(app/engines/local/vision.py), how far apart their outputs are, and the whole prefill (a
one-token run of the engine) both ways; each beside its floor from the matrix rate measured
at the start. --profile prints the costliest GPU kernels of the packed prefill.

    python bench/vision_prefill.py 2b [--batches 32,128] [--tokenizer qwen] [--profile 32]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.engines.local.engine import LocalEngine  # noqa: E402
from app.engines.local.options import LocalOptions  # noqa: E402
from app.engines.local.vision import use_packed_vision  # noqa: E402
from bench.draft import QWEN3, images, load_model  # noqa: E402
from bench.floors import ceilings, prefill_flops  # noqa: E402
from tests.support.random_model import REAL_MODELS  # noqa: E402


def gpu_seconds(fn: object, repeat: int = 2) -> float:
    """The median wall time of `fn()` on the GPU, after one warm-up."""
    import torch

    times = []
    for _ in range(repeat + 1):
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()  # type: ignore[operator]
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return sorted(times[1:])[len(times[1:]) // 2]


def measure(
    model: object, plain: LocalEngine, visual: object, packed: object, batch: int, top: dict
) -> dict:
    """One batch size: the tower and the whole prefill, as transformers has them and packed."""
    import torch

    inputs = plain._prepare(images(batch))
    pixels, grid = inputs["pixel_values"], inputs["image_grid_thw"]
    patches = int(grid[0].prod())
    flops = prefill_flops(model, prompt_tokens=int(inputs["input_ids"].shape[1]), patches=patches)
    row: dict = {"batch": batch, "patches_per_image": patches}
    inner = model.model  # type: ignore[attr-defined]
    with torch.inference_mode():
        want = visual(pixels, grid_thw=grid).pooler_output  # type: ignore[operator]
        got = packed(pixels, grid_thw=grid).pooler_output  # type: ignore[operator]
        row["max_rel_diff"] = round(float((got - want).abs().max() / want.abs().max()), 5)
        for name, tower in (("hf", visual), ("packed", packed)):
            s = gpu_seconds(lambda t=tower: t(pixels, grid_thw=grid))  # type: ignore[operator]
            row[f"tower_{name}_s_per_image"] = round(s / batch, 4)
        row["tower_floor_s_per_image"] = round(flops["vision"] / top["matmul_tflops"] / 1e12, 4)
        for name, tower in (("hf", visual), ("packed", packed)):
            inner.visual = tower
            s = gpu_seconds(lambda: plain._generate(inputs))
            row[f"prefill_{name}_s_per_image"] = round(s / batch, 4)
        inner.visual = visual
    total = flops["vision"] + flops["text"]
    row["prefill_floor_s_per_image"] = round(total / top["matmul_tflops"] / 1e12, 4)
    row["speedup"] = round(row["prefill_hf_s_per_image"] / row["prefill_packed_s_per_image"], 3)
    row["peak_GB"] = round(torch.cuda.max_memory_allocated() / 1e9, 1)
    return row


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=["2b", "7b", *QWEN3])
    ap.add_argument("--batches", default="32,128")
    ap.add_argument("--tokenizer", choices=["byte", "bpe", "qwen"], default="qwen")
    ap.add_argument("--models", type=Path, default=REAL_MODELS)
    ap.add_argument("--profile", type=int, default=0, help="profile the packed prefill here")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    top = ceilings()
    model, processor = load_model(args.shape, args.tokenizer, args.models)
    # The engine as users run it, but its tower left as transformers has it.
    plain = LocalEngine(
        model,
        processor,
        batch_size=1,
        max_new_tokens=1,
        options=LocalOptions(min_steps=1, packed_vision=False, grammar=False),
    )
    visual = model.model.visual
    packed_visual = copy.deepcopy(visual)
    use_packed_vision(packed_visual)
    report: dict = {"shape": args.shape, "gpu": torch.cuda.get_device_name(), "ceilings": top}
    report["runs"] = []
    for batch in (int(b) for b in args.batches.split(",")):
        row = measure(model, plain, visual, packed_visual, batch, top)
        print(json.dumps(row), flush=True)
        report["runs"].append(row)
        torch.cuda.empty_cache()
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        inputs = plain._prepare(images(args.profile))
        model.model.visual = packed_visual
        with torch.inference_mode():
            plain._generate(inputs)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                plain._generate(inputs)
                torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
