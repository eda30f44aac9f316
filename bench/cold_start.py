"""Cold start: a saved model to its first caption, in a fresh process, first-ever and next.

The model (random weights, the real Qwen tokenizer and chat template, or the Qwen3-VL
files) is saved once, so its weights are in the page cache as a user's would be after the
first read. Then a fresh Python process loads it through `LocalEngine.load` and drafts one
1024x1024 image, twice: the first with empty compiler caches (what a first-ever start pays:
Triton and inductor compiling, the per-product timing, the grammar), the second with the
caches the first left (the grammar in the engine's cache folder). Each reports its phases.

    python bench/cold_start.py 2b [--folder DIR] [--models DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _start(folder: str) -> dict:
    """In the fresh process: load, draft one image, with the time of each phase."""
    started = time.perf_counter()
    import numpy as np
    import torch
    from PIL import Image

    from app.engines.interface import DraftInput
    from app.engines.local import engine as local
    from app.engines.local.text_step import TextStep
    from app.engines.prompt import build_prompt

    phases: dict[str, float] = {"import_s": time.perf_counter() - started}

    def timed(owner: object, name: str, key: str) -> None:
        original = getattr(owner, name)

        def wrapper(*a: object, **kw: object) -> object:
            t = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                phases[key] = phases.get(key, 0.0) + time.perf_counter() - t

        setattr(owner, name, wrapper)

    import transformers

    timed(local, "compile_grammar", "grammar_s")  # on a thread, beside the weights
    timed(transformers.AutoProcessor, "from_pretrained", "processor_s")
    timed(transformers.AutoModelForImageTextToText, "from_pretrained", "weights_s")
    timed(local, "use_fused_vision_rotary", "vision_rotary_compile_s")
    timed(TextStep, "choose_products", "product_timing_s")
    t = time.perf_counter()
    engine = local.LocalEngine.load(
        folder,
        device="cuda",
        batch_size=0,
        max_new_tokens=450,
        cache_dir=Path(os.environ["ATELIER_CACHE_DIR"]),  # as the app's <data>/cache
    )
    torch.cuda.synchronize()
    phases["load_s"] = time.perf_counter() - t
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (1024, 1024, 3), dtype=np.uint8))
    prompt = build_prompt(width=1024, height=1024, convention=engine.convention, style_block={})
    t = time.perf_counter()
    out = engine.draft([DraftInput(image, prompt)])[0]
    torch.cuda.synchronize()
    phases["first_caption_s"] = time.perf_counter() - t
    t = time.perf_counter()
    engine.draft([DraftInput(image, prompt)])
    torch.cuda.synchronize()
    phases["second_caption_s"] = time.perf_counter() - t
    phases["load_to_first_caption_s"] = phases["load_s"] + phases["first_caption_s"]
    report = {k: round(v, 2) for k, v in phases.items()}
    report["captioned"] = out.caption is not None
    return report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=["2b", "7b", "qwen3-4b", "qwen3-8b"])
    ap.add_argument("--folder", type=Path, default=None, help="where the model is saved")
    ap.add_argument("--models", type=Path, default=None, help="real Qwen files")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(_start(args.child)), flush=True)
        return
    import torch

    from bench.draft import load_model
    from tests.support.random_model import REAL_MODELS

    folder = args.folder or Path(tempfile.mkdtemp()) / args.shape
    report: dict = {"shape": args.shape, "gpu": torch.cuda.get_device_name(0)}
    if not (folder / "config.json").is_file():
        t = time.perf_counter()
        model, processor = load_model(args.shape, "qwen", args.models or REAL_MODELS)
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        del model
        torch.cuda.empty_cache()
        report["save_s"] = round(time.perf_counter() - t, 1)
    caches = Path(tempfile.mkdtemp())
    env = os.environ | {
        "TRITON_CACHE_DIR": str(caches / "triton"),
        "TORCHINDUCTOR_CACHE_DIR": str(caches / "inductor"),
        "ATELIER_CACHE_DIR": str(caches / "atelier"),
        "HF_HUB_OFFLINE": "1",
    }
    for name in ("first_ever", "next"):
        t = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, args.shape, "--child", str(folder)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if out.returncode or not lines:
            print(out.stderr[-3000:], file=sys.stderr)
            report[name] = {"failed": out.returncode}
            continue
        report[name] = json.loads(lines[-1].removeprefix("RESULT "))
        report[name]["process_s"] = round(time.perf_counter() - t, 2)
        print(json.dumps({name: report[name]}), flush=True)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
