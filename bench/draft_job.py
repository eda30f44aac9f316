"""A whole drafting job on a GPU, against the engine alone on the same images, same run.

The job is the real thing: PNG files imported into a SQLite data folder, a job created and
run by `pipeline.run_job`, which reads and decodes each image, prepares palettes, drafts and
writes back, loading the next batch while one drafts. The engine alone gets the same images
already decoded, one batch per call and then all in one call. The job's figure is what a
user's progress bar shows; the ratios say what the job costs beyond the engine.

Random weights rarely end a caption within the token budget, so every image is drafted
exactly once (no retry) and recorded as cut: the element palettes and the revision a real
draft writes are not part of the job's time here.

    python bench/draft_job.py 2b [--images 128] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlmodel import Session  # noqa: E402

from app import datasets as ds  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import make_engine, migrate  # noqa: E402
from app.drafting import jobs, pipeline  # noqa: E402
from app.drafting.engine import DraftInput  # noqa: E402
from app.drafting.local.engine import LocalEngine  # noqa: E402
from app.drafting.local.options import LocalOptions  # noqa: E402
from app.drafting.prompt import build_prompt  # noqa: E402
from app.images.decode import display_rgb  # noqa: E402
from app.images.importer import import_sources  # noqa: E402
from app.images.sources import walk_paths  # noqa: E402
from app.images.store import content_store  # noqa: E402
from bench.draft import NEW_TOKENS  # noqa: E402
from tests.support.random_model import build, python_sources, tokenizer  # noqa: E402

SIDE = 1024


def paintings(folder: Path, n: int) -> list[Path]:
    """Smooth colour fields (closer to a painting than noise), 1024 px, as PNG."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))
        path = folder / f"{i:04d}.png"
        small.resize((SIDE, SIDE), Image.Resampling.BICUBIC).save(path)
        paths.append(path)
    return paths


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=["2b", "7b", "tiny"], help="tiny: a CPU smoke run")
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tokenizer", choices=["byte", "bpe"], default="byte", help="as in draft.py")
    args = ap.parse_args()
    # 0: the engine's choice from the GPU's memory, made on the warm-up batch here.
    assert args.batch == 0 or args.images % args.batch == 0, "whole batches: one batch size"
    pipeline.MAX_ATTEMPTS = 1  # each image drafted once (see the docstring)
    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    report: dict = {
        "shape": args.shape,
        "gpu": torch.cuda.get_device_name(0) if cuda else "cpu",
        "images": args.images,
        "batch": args.batch,
        "new_tokens": NEW_TOKENS,
        "tokenizer": args.tokenizer,
    }
    model, processor = build(
        args.shape,  # type: ignore[arg-type]
        device="cuda" if cuda else "cpu",
        dtype=torch.bfloat16 if cuda else torch.float32,
        max_pixels=SIDE * SIDE,
        tok=tokenizer(python_sources()) if args.tokenizer == "bpe" else None,
    )
    engine = LocalEngine(
        model,
        processor,
        batch_size=args.batch,
        max_new_tokens=NEW_TOKENS,
        options=LocalOptions(min_steps=NEW_TOKENS),
    )
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", draft_max_pixels=SIDE * SIDE)  # type: ignore[call-arg]
        db = make_engine(settings)
        migrate(db)
        paths = paintings(Path(tmp) / "src", args.images)
        with Session(db) as session:
            dataset = ds.create_dataset(session, name="Bench")
            sources, _ = walk_paths([p.parent for p in paths[:1]])
            import_sources(session, settings=settings, dataset=dataset, sources=sources)
            dataset_id = dataset.id

        prompt = build_prompt(width=SIDE, height=SIDE, convention="qwen2vl", style_block={})
        inputs = [DraftInput(display_rgb(p.read_bytes(), max_side=SIDE), prompt) for p in paths]
        engine.draft(inputs[: args.batch or engine.batch_size])  # captures this batch size
        if not args.batch:
            engine.draft(inputs[: engine.batch_size])  # the size it chose, captured
            report["batch_chosen"] = engine.batch_size
        size = engine.batch_size

        def timed(fn) -> float:  # type: ignore[no-untyped-def]
            sync()
            t = time.perf_counter()
            fn()
            sync()
            return time.perf_counter() - t

        chunks = [inputs[i : i + size] for i in range(0, len(inputs), size)]
        per_call = timed(lambda: [engine.draft(c) for c in chunks])
        streamed = timed(lambda: engine.draft(inputs))

        def job() -> jobs.DraftJob:
            with Session(db) as session:
                dataset = ds.get_dataset(session, dataset_id)  # type: ignore[arg-type]
                created = jobs.create_job(
                    session,
                    dataset=dataset,
                    engine="local",
                    model=args.shape,
                    batch_size=args.batch,
                    scope="all",
                    worker=jobs.worker_id(),
                )
                job_id = created.id
            return pipeline.run_job(
                db,
                job_id=job_id,  # type: ignore[arg-type]
                engine=engine,
                store=content_store(settings),
                max_pixels=settings.draft_max_pixels,
            )

        ended: list[jobs.DraftJob] = []
        job_s = timed(lambda: ended.append(job()))
        db.dispose()
    n = args.images
    report |= {
        "engine_per_call_images_per_s": round(n / per_call, 3),
        "engine_streamed_images_per_s": round(n / streamed, 3),
        "job_images_per_s": round(n / job_s, 3),
        # Where the job's time went: inside the engine's calls, and around them (loading the
        # first batch, writing results).
        "job_in_engine_s": round(ended[0].drafting_seconds, 2),
        "job_outside_engine_s": round(job_s - ended[0].drafting_seconds, 2),
        "job_vs_engine_per_call": round(per_call / job_s, 3),
        "job_vs_engine_streamed": round(streamed / job_s, 3),
        "peak_GB": round(torch.cuda.max_memory_allocated() / 1e9, 1) if cuda else None,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
