"""Drafting speed on a GPU: Atelier's local engine beside plain HF generate.

Qwen2-VL at the 2B or 7B shape, or Qwen3-VL at the 4B one (patch 16, deepstack), with random
weights (tests/support/random_model.py), 1024x1024 images, exactly NEW_TOKENS new tokens an
image (450: a structured caption), the real prompt, processor, schema-constrained decoding
and parsing. For each batch size (0: the engine's own choice, after its short first batch):
one warm-up call (compiles that shape), then a timed call, then its prefill alone; each
beside its floor (bench/floors.py) from the ceilings measured at the start of the call. Also
the same batch without the grammar (its cost), peak GPU memory, and, with --baseline, the
house's plain-HF anchor (../shared/bench/qwen2vl_baseline.py) run in the same call.

--tokenizer qwen takes the real Qwen tokenizer and chat template (../shared/models, or
--models): prompts of the real length, the grammar over the real 151k vocabulary.

    python bench/draft.py 2b [--batches 1,0] [--tokenizer qwen] [--baseline PATH] [--json OUT]

`tiny` runs a tiny model on the CPU (no GPU, no ceilings worth the name): a smoke run of
every path of this script before a GPU call.

Goals on one H100: 2B >= 12 images/s, 7B >= 4 images/s, a 2B re-draft <= 1 s, the grammar
<= 10% at batch 32.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.engines.interface import DraftInput  # noqa: E402
from app.engines.local.engine import LocalEngine  # noqa: E402
from app.engines.local.options import LocalOptions  # noqa: E402
from app.engines.prompt import build_prompt  # noqa: E402
from app.engines.schema import BoxConvention  # noqa: E402
from bench.floors import ceilings, floors  # noqa: E402
from tests.support.random_model import (  # noqa: E402
    REAL_MODELS,
    build,
    from_real,
    python_sources,
    real_tokenizer,
    tokenizer,
)

NEW_TOKENS = int(os.environ.get("NEW_TOKENS", 450))
QWEN3 = {"qwen3-4b": "Qwen3-VL-4B-Instruct", "qwen3-8b": "Qwen3-VL-8B-Instruct"}
# Qwen2-VL shares this checkpoint's vocabulary and chat template (../shared/models/README.md).
QWEN2_FILES = "Qwen2.5-VL-7B-Instruct"


def load_model(shape: str, tokenizer_kind: str, models: Path, **kw: object) -> tuple:
    """The benchmark's (model, processor): a Qwen3-VL shape around its real files, or a
    Qwen2-VL one with the byte-level, trained-BPE or real Qwen tokenizer; on the GPU in
    bf16, 1024x1024 pixels at most, unless `kw` says otherwise."""
    import torch

    kw = {"device": "cuda", "dtype": torch.bfloat16, "max_pixels": 1024 * 1024, **kw}
    if shape == "tiny":
        kw |= {"device": "cpu", "dtype": torch.float32}
    if shape in QWEN3:
        return from_real(models / QWEN3[shape], "full", **kw)  # type: ignore[arg-type]
    extra: dict = {}
    if tokenizer_kind == "qwen":
        extra["tok"], extra["chat_template"] = real_tokenizer(models / QWEN2_FILES)
    elif tokenizer_kind == "bpe":
        extra["tok"] = tokenizer(python_sources())
    return build(shape, **kw, **extra)  # type: ignore[arg-type]


def fixed_length_engine(
    model: object, processor: object, batch: int, prefill_rows: int = 0
) -> LocalEngine:
    """The engine as users run it, at `batch` images a batch, every draft NEW_TOKENS long
    (the same steps for every image, as in the baseline)."""
    return LocalEngine(
        model,
        processor,
        batch_size=batch,
        max_new_tokens=NEW_TOKENS,
        options=LocalOptions(min_steps=NEW_TOKENS, prefill_rows=prefill_rows),
    )


def images(n: int, convention: BoxConvention = "qwen2vl") -> list[DraftInput]:
    rng = np.random.default_rng(0)
    prompt = build_prompt(width=1024, height=1024, convention=convention, style_block={})
    return [
        DraftInput(Image.fromarray(rng.integers(0, 255, (1024, 1024, 3), dtype=np.uint8)), prompt)
        for _ in range(n)
    ]


def _chat(processor: object) -> str:
    """The full text of one drafting request, as the engine builds it."""
    return processor.apply_chat_template(  # type: ignore[attr-defined]
        [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": images(1)[0].prompt}],
            }
        ],
        add_generation_prompt=True,
        tokenize=False,
    )


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(engine: LocalEngine, inputs: list[DraftInput]) -> float:
    sync()
    t = time.perf_counter()
    engine.draft(inputs)
    sync()
    return time.perf_counter() - t


def peak_gb() -> float:
    import torch

    return round(torch.cuda.max_memory_allocated() / 1e9, 1) if torch.cuda.is_available() else 0.0


def reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def baseline(path: str, shape: str, batches: str) -> list[dict]:
    env = os.environ | {"BATCHES": batches, "NEW_TOKENS": str(NEW_TOKENS)}
    out = subprocess.run(
        [sys.executable, path, shape], env=env, capture_output=True, text=True, timeout=900
    )
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
    return rows


def profile(model: object, processor: object, batch: int) -> dict:
    """Seconds spent preparing the inputs (CPU), in prefill, and per decode step."""

    inputs = images(batch)
    engine = LocalEngine(
        model, processor, batch_size=batch, max_new_tokens=1, options=LocalOptions(min_steps=1)
    )
    t = time.perf_counter()
    prepared = engine._prepare(inputs)
    prep = time.perf_counter() - t
    engine._generate(prepared)  # warm
    sync()
    t = time.perf_counter()
    engine._generate(prepared)
    sync()
    prefill = time.perf_counter() - t
    engine = fixed_length_engine(model, processor, batch)
    total = timed(engine, inputs)
    return {
        "batch": batch,
        "prompt_tokens": int(prepared["input_ids"].shape[1]),
        "inputs_cpu_s": round(prep, 2),
        "prefill_s": round(prefill, 2),
        "whole_s": round(total, 2),
        "decode_ms_per_step": round((total - prep - prefill) / NEW_TOKENS * 1000, 2),
    }


def main() -> None:
    import torch

    from app.engines.local.engine import AUTO_FIRST_BATCH

    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=["2b", "7b", *QWEN3, "tiny"], help="tiny: CPU smoke run")
    ap.add_argument("--batches", default="1,32,64", help="0: the engine's automatic choice")
    ap.add_argument("--no-grammar-at", type=int, default=32)
    ap.add_argument(
        "--no-confidence",
        action="store_true",
        help="keep no token probabilities (run once with and once without: their cost)",
    )
    ap.add_argument(
        "--confidence-at",
        type=int,
        default=None,
        help="at this asked batch (0: the automatic one), time the same batch with and without "
        "the confidences, alternating, --confidence-rounds times each, in one engine",
    )
    ap.add_argument("--confidence-rounds", type=int, default=3)
    ap.add_argument(
        "--prompt-attention-at",
        type=int,
        default=None,
        help="at this asked batch (0: the automatic one), time the batch and its prefill with "
        "the prompt's attention (attention.py) on and off, alternating, in one engine",
    )
    ap.add_argument(
        "--read-to-last-at",
        type=int,
        default=None,
        help="at this asked batch (0: the automatic one), time the batch with Atelier's "
        "attention reading the cache up to the step's column and the whole cache, "
        "alternating, in one engine",
    )
    ap.add_argument("--stream", type=int, default=3, help="batches in the streamed run")
    ap.add_argument("--stream-at", default="32,64", help="batch sizes also timed streamed")
    ap.add_argument("--baseline", default=None)
    ap.add_argument("--baseline-batches", default="32")
    ap.add_argument("--json", default=None)
    ap.add_argument("--models", type=Path, default=REAL_MODELS, help="real Qwen files")
    ap.add_argument("--compile", action="store_true", help="torch.compile the decode step")
    ap.add_argument(
        "--unpacked-vision", action="store_true", help="transformers' vision attention per image"
    )
    ap.add_argument("--unfused-rotary", action="store_true", help="and its own vision rotary")
    ap.add_argument(
        "--tokenizer",
        choices=["byte", "bpe", "qwen"],
        default="byte",
        help="bpe: trained on the Python standard library's source (about a real tokenizer's "
        "prompt length); qwen: the real Qwen tokenizer and chat template (--models)",
    )
    ap.add_argument(
        "--cpu-preprocess", action="store_true", help="images resized and patched on the CPU"
    )
    ap.add_argument(
        "--model-step", action="store_true", help="step through the model, not the lean step"
    )
    ap.add_argument(
        "--no-kernels", action="store_true", help="torch ops, not Atelier's Triton kernels"
    )
    ap.add_argument(
        "--plain-attention", action="store_true", help="transformers' sdpa, not the grouped one"
    )
    ap.add_argument(
        "--triton-below",
        type=int,
        default=0,
        help="Atelier's attention below this batch size only (sdpa from it); 0: every batch",
    )
    ap.add_argument(
        "--no-closing", action="store_true", help="no shortest valid end near the budget"
    )
    ap.add_argument(
        "--profile-at", type=int, default=0, help="split one batch's time into its parts"
    )
    ap.add_argument(
        "--prefill-rows",
        type=int,
        default=0,
        help="the prompts written this many rows a forward (prefill.py); 0: all at once; -1: "
        "chosen with the automatic batch",
    )
    args = ap.parse_args()
    qwen3 = args.shape in QWEN3
    convention: BoxConvention = "qwen3vl" if qwen3 else "qwen2vl"
    report: dict = {
        "shape": args.shape,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "new_tokens": NEW_TOKENS,
        "attention": "sdpa" if args.plain_attention else "grouped",
        "compiled_step": args.compile,
        "step": "model" if args.model_step else "lean",
        "kernels": not args.no_kernels,
        "vision": (
            "packed"
            if not args.unpacked_vision
            else "transformers"
            if args.unfused_rotary
            else "rotary fused"
        ),
        "preprocess": "cpu" if args.cpu_preprocess else "gpu",
        "tokenizer": "qwen" if qwen3 else args.tokenizer,
        "closing": not args.no_closing,
        "triton_attention_below": args.triton_below or "every batch",
        "prefill_rows": args.prefill_rows or "all",
    }
    print(json.dumps(report), flush=True)
    if args.baseline:
        report["baseline"] = baseline(args.baseline, args.shape, args.baseline_batches)
        print(json.dumps({"baseline": report["baseline"]}), flush=True)  # all of it, at once
    report["ceilings"] = limits = ceilings()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the ceilings' buffers
    print(json.dumps({"ceilings": limits}), flush=True)

    t = time.perf_counter()
    model, processor = load_model(args.shape, args.tokenizer, args.models)
    report["build_s"] = round(time.perf_counter() - t, 1)
    one = processor(
        text=[_chat(processor)], images=[images(1, convention)[0].image], return_tensors="pt"
    )
    report["prompt_tokens"] = prompt_tokens = int(one["input_ids"].shape[1])
    report["patches_per_image"] = patches = int(one["image_grid_thw"][0].prod())
    print(json.dumps({"prompt_tokens": prompt_tokens, "patches": patches}), flush=True)
    batches = [int(b) for b in args.batches.split(",")]
    streams = {int(b) for b in args.stream_at.split(",") if b}
    engines: dict[bool, LocalEngine] = {}

    def engine_for(batch: int, grammar: bool) -> LocalEngine:
        """One engine with the grammar and one without, reused: compiling the grammar for a
        real vocabulary takes seconds."""
        if grammar not in engines:
            # The other engine's graphs and buffers go first: beside them, 2B without the
            # grammar at batch 256 ran out of memory on an H100 and halved to 128.
            for other in list(engines):
                engines.pop(other).close()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            t = time.perf_counter()
            engines[grammar] = LocalEngine(
                model,
                processor,
                batch_size=batch,
                max_new_tokens=NEW_TOKENS,
                compile_step=args.compile,
                options=LocalOptions(
                    min_steps=NEW_TOKENS,  # every image runs the same steps, as in the baseline
                    grammar=grammar,
                    grouped_attention=not args.plain_attention,
                    lean_step=not args.model_step,
                    kernels=not args.no_kernels,
                    packed_vision=not args.unpacked_vision,
                    fused_vision_rotary=not args.unfused_rotary,
                    gpu_preprocess=not args.cpu_preprocess,
                    closing=not args.no_closing,
                    triton_attention_below=args.triton_below or None,
                    confidence=not args.no_confidence,
                    prefill_rows=args.prefill_rows,
                ),
            )
            report[f"engine_{'with' if grammar else 'without'}_grammar_s"] = round(
                time.perf_counter() - t, 1
            )
        engine = engines[grammar]
        engine.batch_size, engine.auto_batch = (batch, False) if batch else (AUTO_FIRST_BATCH, True)
        engine.decoder.prefill_rows = args.prefill_rows  # -1 is chosen with the batch again
        engine.max_new_tokens = engine.min_steps = NEW_TOKENS
        return engine

    runs: list[dict[str, Any]] = []
    for asked in batches:
        for grammar in (True, False) if asked == args.no_grammar_at else (True,):
            chosen = [r["batch"] for r in runs if r["asked"] == asked and r["grammar"]]
            if not grammar and chosen:
                # Without the grammar at the batch the run with it chose (the automatic
                # choice could differ): the grammar's cost at one batch size.
                engine = engine_for(chosen[0], grammar)
            else:
                engine = engine_for(asked, grammar)
            reset_peak()
            first = engine.batch_size
            warm = timed(engine, images(first, convention))
            batch = engine.batch_size  # the automatic choice, made on the warm-up
            if batch != first:
                warm += timed(engine, images(batch, convention))  # captures the chosen size
            inputs = images(batch, convention)
            dt = timed(engine, inputs)
            row = {
                "batch": batch,
                "asked": asked,
                "automatic": not asked,
                "grammar": grammar,
                "prefill_rows": engine.decoder.prefill_rows,
                "warmup_s": round(warm, 2),
                "s": round(dt, 3),
                "images_per_s": round(batch / dt, 3),
                "peak_GB": peak_gb(),
            }
            row |= prefill_and_step(engine, inputs, dt)
            row |= floors(
                model,
                limits,
                batch=batch,
                prompt_tokens=prompt_tokens,
                patches=patches,
                new_tokens=NEW_TOKENS,
            )
            row["prefill_floor_share"] = round(
                row["prefill_floor_s_per_image"] / row["prefill_s_per_image"], 3
            )
            row["step_floor_share"] = round(row["step_floor_ms"] / row["step_ms"], 3)
            if grammar and asked == args.confidence_at:
                row |= confidence_cost(engine, inputs, args.confidence_rounds)
            if grammar and asked == args.prompt_attention_at:
                row |= prompt_attention_gain(engine, inputs, args.confidence_rounds)
            if grammar and asked == args.read_to_last_at:
                row |= read_to_last_gain(engine, inputs, args.confidence_rounds)
            if grammar and batch in streams:
                # Several batches in one call: the next batch's inputs are prepared on the CPU
                # while the GPU decodes, as in a drafting job.
                dt = timed(engine, images(batch * args.stream, convention))
                row["stream_batches"] = args.stream
                row["stream_images_per_s"] = round(batch * args.stream / dt, 3)
            runs.append(row)
            print(json.dumps(row), flush=True)
            print(
                f"batch {batch}: {row['images_per_s']} images/s; prefill "
                f"{row['prefill_s_per_image'] * 1e3:.1f} ms an image (floor "
                f"{row['prefill_floor_s_per_image'] * 1e3:.1f}, {row['prefill_floor_share']:.0%}"
                f"); step {row['step_ms']:.2f} ms (floor {row['step_floor_ms']:.2f}, "
                f"{row['step_floor_share']:.0%}); ceilings {limits['matmul_tflops']} TFLOP/s, "
                f"{limits['copy_TBps']} TB/s",
                flush=True,
            )
    report["runs"] = runs
    if args.profile_at:
        report["profile"] = profile(model, processor, args.profile_at)
        print(json.dumps({"profile": report["profile"]}), flush=True)
    with_g = {r["batch"]: r for r in runs if r["grammar"]}
    for row in runs:
        if not row["grammar"] and row["batch"] in with_g:
            ours = with_g[row["batch"]]
            report["grammar_cost"] = round(row["images_per_s"] / ours["images_per_s"] - 1, 3)
            report["grammar_cost_batch"] = row["batch"]
    for base in report.get("baseline") or []:
        for key, value in base.items():
            if key.startswith("b") and isinstance(value, dict) and int(key[1:]) in with_g:
                rate = with_g[int(key[1:])]["images_per_s"]
                report[f"speedup_vs_hf_{key}"] = round(rate / value["img_per_s"], 2)
    print(json.dumps(report), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


def confidence_cost(engine: LocalEngine, inputs: list[DraftInput], rounds: int) -> dict:
    """The same batch timed with and without each token's log probability kept (the draft's
    confidences: one pass over the logits a step on the GPU, and the fields' spans on the
    CPU), alternating so that the machine's drift falls on both; the best of each."""
    kept = engine.confidence
    times: dict[bool, list[float]] = {True: [], False: []}
    try:
        for _ in range(rounds):
            for on in (False, True):
                engine.confidence = on
                times[on].append(timed(engine, inputs))
    finally:
        engine.confidence = kept
    with_, without = min(times[True]), min(times[False])
    return {
        "confidence_s": [round(x, 3) for x in times[True]],
        "no_confidence_s": [round(x, 3) for x in times[False]],
        "confidence_cost": round(with_ / without - 1, 4),
    }


def prompt_attention_gain(engine: LocalEngine, inputs: list[DraftInput], rounds: int) -> dict:
    """The same batch, and its prefill alone, timed with the prompt's attention on (its own
    columns, cuDNN's kernel first) and off (transformers' path over the whole cache),
    alternating; the best of each, and the peak memory of each."""
    import torch

    kept = engine.decoder.prompt_attention
    out: dict[str, Any] = {}
    try:
        for on in (False, True):
            engine.decoder.prompt_attention = on
            reset_peak()
            timed(engine, inputs)
            out[f"prompt_attention_{'on' if on else 'off'}_peak_GB"] = peak_gb()
        times: dict[bool, list[float]] = {True: [], False: []}
        prefills: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(rounds):
            for on in (False, True):
                engine.decoder.prompt_attention = on
                times[on].append(timed(engine, inputs))
                prefills[on].append(prefill_and_step(engine, inputs, 0.0)["prefill_s_per_image"])
    finally:
        engine.decoder.prompt_attention = kept
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    n = len(inputs)
    return out | {
        "prompt_attention_on_s": [round(x, 3) for x in times[True]],
        "prompt_attention_off_s": [round(x, 3) for x in times[False]],
        "prompt_attention_images_per_s": round(n / min(times[True]), 3),
        "plain_prefill_images_per_s": round(n / min(times[False]), 3),
        "prompt_attention_prefill_ms_per_image": round(min(prefills[True]) * 1e3, 2),
        "plain_prefill_ms_per_image": round(min(prefills[False]) * 1e3, 2),
        "prompt_attention_speedup": round(min(times[False]) / min(times[True]), 4),
    }


def read_to_last_gain(engine: LocalEngine, inputs: list[DraftInput], rounds: int) -> dict:
    """The same batch with Atelier's attention reading the cache up to the step's column
    (kernels.decode_attention's `last`) and reading all of it, alternating; the step is
    captured again at each switch (the first run after one is not timed). The best of each,
    and the step's time from each."""
    step = engine.decoder.text_step
    if step is None:
        return {"read_to_last": "no lean step"}

    def switch(on: bool) -> None:
        assert step is not None
        step.read_to_last = on
        for slot in engine.decoder.slots.values():
            slot.graph = None
            slot.feed_graphs.clear()
        timed(engine, inputs)  # captured again

    kept = step.read_to_last
    times: dict[bool, list[float]] = {True: [], False: []}
    steps: dict[bool, list[float]] = {True: [], False: []}
    try:
        for _ in range(rounds):
            for on in (False, True):
                switch(on)
                whole = timed(engine, inputs)
                times[on].append(whole)
                steps[on].append(prefill_and_step(engine, inputs, whole)["step_ms"])
    finally:
        switch(kept)
    n = len(inputs)
    return {
        "read_to_last_s": [round(x, 3) for x in times[True]],
        "whole_cache_s": [round(x, 3) for x in times[False]],
        "read_to_last_images_per_s": round(n / min(times[True]), 3),
        "whole_cache_images_per_s": round(n / min(times[False]), 3),
        "read_to_last_step_ms": round(min(steps[True]), 3),
        "whole_cache_step_ms": round(min(steps[False]), 3),
        "read_to_last_speedup": round(min(times[False]) / min(times[True]), 4),
    }


def prefill_and_step(engine: LocalEngine, inputs: list[DraftInput], whole_s: float) -> dict:
    """The batch's preparation and prefill timed alone (prefill: a one-token run), and the
    decode step's time: what is left of the whole call, over its steps."""

    t = time.perf_counter()
    prepared = engine._prepare(inputs)
    prep = time.perf_counter() - t
    budget = engine.max_new_tokens
    engine.max_new_tokens = engine.min_steps = 1
    try:
        sync()
        t = time.perf_counter()
        engine._generate(prepared)
        sync()
        prefill = time.perf_counter() - t
    finally:
        engine.max_new_tokens = engine.min_steps = budget
    n = len(inputs)
    return {
        "prepare_s_per_image": round(prep / n, 4),
        "prefill_s_per_image": round(prefill / n, 4),
        "step_ms": round((whole_s - prep - prefill) / budget * 1e3, 3),
    }


if __name__ == "__main__":
    main()
