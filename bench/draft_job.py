"""A whole drafting job on a GPU, against the engine alone on the same images, same run.

The job is the real thing: PNG files imported into a SQLite data folder, a job created and
run by `pipeline.run_job`, which reads and decodes each image, prepares palettes, drafts and
writes back, loading the next batch while one drafts. The engine alone gets the same images
already decoded, one batch per call and then all in one call. The job's figure is what a
user's progress bar shows; the ratios say what the job costs beyond the engine.

Every image is drafted exactly once (no retry); random weights write to the end of the
budget, where the engine closes each answer (app/engines/local/closing.py), so each draft
is a caption and its revision and element palettes are written as a user's would be. A
random model writes hardly any boxes, where a real draft has several, each a palette to
make from its crop: --boxes N gives each of the job's drafts N boxed elements in place of
the model's (after the engine, which is timed as it is), so the job does a real job's work.

--data keeps the PNGs and the imported data folder there, and a later call with the same
folder and image count reuses them rather than importing again; --passes runs only the
timings asked for (the job, the engine alone in one call, the engine batch by batch, and
job-whole: the job again with its first batch prepared whole once decoded rather than in
parts while it decodes).

    python bench/draft_job.py 2b [--images 128] [--batch 32] [--passes job,streamed] [--boxes 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from inspect import signature
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlmodel import Session  # noqa: E402

from app import datasets as ds  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import make_engine, migrate  # noqa: E402
from app.drafting import jobs, pipeline  # noqa: E402
from app.engines.interface import DraftInput, DraftOutput, parse_output  # noqa: E402
from app.engines.local.engine import LocalEngine  # noqa: E402
from app.engines.prompt import build_prompt  # noqa: E402
from app.errors import NotFound  # noqa: E402
from app.images.decode import display_rgb  # noqa: E402
from app.images.importer import import_sources  # noqa: E402
from app.images.sources import walk_paths  # noqa: E402
from app.images.store import content_store  # noqa: E402
from bench.draft import NEW_TOKENS, fixed_length_engine, load_model  # noqa: E402
from bench.draft_pipeline import answer  # noqa: E402
from tests.support.random_model import REAL_MODELS  # noqa: E402

SIDE = 1024
PASSES = ("job", "streamed", "per-call", "job-whole")


def paintings(folder: Path, n: int) -> list[Path]:
    """Smooth colour fields (closer to a painting than noise), 1024 px, as PNG: written on
    several threads at zlib's fastest level (at the default level, 0.3 s an image made
    writing 256 of them most of a GPU call)."""
    from concurrent.futures import ThreadPoolExecutor

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    smalls = [rng.integers(0, 255, (24, 24, 3), dtype=np.uint8) for _ in range(n)]
    paths = [folder / f"{i:04d}.png" for i in range(n)]

    def write(i: int) -> None:
        big = Image.fromarray(smalls[i]).resize((SIDE, SIDE), Image.Resampling.BICUBIC)
        big.save(paths[i], compress_level=1)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(n)))
    return paths


def imported(root: Path, n: int, settings: Settings, db: object) -> tuple[int, list[Path], bool]:
    """The benchmark's dataset of `n` paintings under `root`: its id, its source files, and
    whether it was there already (imported by an earlier call)."""
    name = f"Bench {n}"
    with Session(db) as session:  # type: ignore[arg-type]
        try:
            dataset = ds.find_dataset(session, name)
            paths = sorted((root / f"src-{n}").glob("*.png"))
            if len(paths) == n:
                return dataset.id, paths, True  # type: ignore[return-value]
            raise NotFound(name)
        except NotFound:
            pass
        paths = paintings(root / f"src-{n}", n)
        dataset = ds.create_dataset(session, name=name)
        sources, _ = walk_paths([paths[0].parent])
        import_sources(session, settings=settings, dataset=dataset, sources=sources)
        return dataset.id, paths, False  # type: ignore[return-value]


class WithBoxes:
    """The engine, its drafts given `boxes` boxed elements each (bench/draft_pipeline.py's)."""

    def __init__(self, engine: LocalEngine, boxes: int) -> None:
        self.engine = engine
        caption = parse_output(answer(boxes), convention="qwen2vl").caption
        assert caption is not None
        self.elements = caption.composition.elements

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)  # batch_size, convention, prefetch, close...

    def draft(self, inputs: list[DraftInput]) -> list[DraftOutput]:
        outputs = self.engine.draft(inputs)
        for out in outputs:
            if out.caption is not None:
                composition = out.caption.composition.model_copy(update={"elements": self.elements})
                out.caption = out.caption.model_copy(update={"composition": composition})
        return outputs


def traced_filled(spans: list[tuple[int, float, float, float]]) -> Any:
    """`pipeline._filled` in the job's pool, each task's worker, start and end and when the
    job took its caption (seconds from the submission) kept in `spans`."""
    from bench.job_cpu import traced_fill_caption

    def filled(pixels: Any, loaded: Any, outputs: list[DraftOutput]) -> Any:
        drafted = [
            (i, out.caption)
            for i, out in zip(loaded.ready, outputs, strict=True)
            if out.caption is not None
        ]
        pool = pipeline._palette_pool()
        assert pool is not None
        t0 = time.monotonic()
        made = pool.map(
            traced_fill_caption, [c for _, c in drafted], [pixels[i] for i, _ in drafted]
        )

        def each() -> Any:
            for caption, pid, start, end in made:
                spans.append((pid, start - t0, end - t0, time.monotonic() - t0))
                yield caption

        return each()

    return filled


def traced(spans: list[tuple[int, float, float, float]]) -> dict[str, Any]:
    """How busy the workers were over the element palettes, and how far the job lagged."""
    import os
    import statistics

    wall = max(s[3] for s in spans)
    workers = os.cpu_count() or 1
    return {
        "tasks": len(spans),
        "processes": len({s[0] for s in spans}),
        "wall_s": round(wall, 3),
        "first_start_ms": round(min(s[1] for s in spans) * 1000, 1),
        "last_end_ms": round(max(s[2] for s in spans) * 1000, 1),
        "busy_of_wall_x_workers": round(sum(s[2] - s[1] for s in spans) / (wall * workers), 3),
        "task_ms_median": round(statistics.median(s[2] - s[1] for s in spans) * 1000, 2),
        "task_ms_max": round(max(s[2] - s[1] for s in spans) * 1000, 2),
        "taken_after_end_ms_median": round(statistics.median(s[3] - s[2] for s in spans) * 1000, 2),
    }


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=["2b", "7b", "tiny"], help="tiny: a CPU smoke run")
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument(
        "--tokenizer", choices=["byte", "bpe", "qwen"], default="byte", help="as in draft.py"
    )
    ap.add_argument("--models", type=Path, default=REAL_MODELS, help="real Qwen files")
    ap.add_argument("--data", type=Path, default=None, help="keep and reuse the data here")
    ap.add_argument("--passes", default="job,streamed", help=f"some of {','.join(PASSES)}")
    ap.add_argument("--boxes", type=int, default=0, help="boxed elements in each job draft")
    ap.add_argument(
        "--trace-palettes",
        action="store_true",
        help="the job's element palettes each timed in its worker (bench/job_cpu.py's way)",
    )
    args = ap.parse_args()
    passes = [p for p in args.passes.split(",") if p]
    if not set(passes) <= set(PASSES):
        ap.error(f"--passes takes {', '.join(PASSES)}")
    # 0: the engine's choice from the GPU's memory, made on the warm-up batch here.
    if args.batch and args.images % args.batch:
        ap.error("--images must be whole batches of --batch (one batch size)")
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
        "passes": passes,
        "boxes": args.boxes,
    }
    started = time.perf_counter()
    model, processor = load_model(
        args.shape,
        args.tokenizer,
        args.models,
        device="cuda" if cuda else "cpu",
        dtype=torch.bfloat16 if cuda else torch.float32,
        max_pixels=SIDE * SIDE,
    )
    engine = fixed_length_engine(model, processor, args.batch)
    report["model_and_engine_s"] = round(time.perf_counter() - started, 1)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp)
        settings = Settings(data_dir=root / "data", draft_max_pixels=SIDE * SIDE)  # type: ignore[call-arg]
        db = make_engine(settings)
        migrate(db)
        t = time.perf_counter()
        dataset_id, paths, report["data_reused"] = imported(root, args.images, settings, db)
        report["data_s"] = round(time.perf_counter() - t, 1)

        prompt = build_prompt(width=SIDE, height=SIDE, convention="qwen2vl", style_block={})
        inputs = [DraftInput(display_rgb(p.read_bytes(), max_side=SIDE), prompt) for p in paths]
        t = time.perf_counter()
        engine.draft(inputs[: args.batch or engine.batch_size])  # captures this batch size
        if not args.batch:
            engine.draft(inputs[: engine.batch_size])  # the size it chose, captured
            report["batch_chosen"] = engine.batch_size
        report["warmup_s"] = round(time.perf_counter() - t, 1)
        size = engine.batch_size

        def timed(fn) -> float:  # type: ignore[no-untyped-def]
            sync()
            t = time.perf_counter()
            fn()
            sync()
            return time.perf_counter() - t

        parts: dict[str, float] = {}
        spans: list[tuple[int, float, float, float]] = []
        if args.trace_palettes:
            pipeline._filled = traced_filled(spans)  # type: ignore[assignment]

        def job() -> jobs.DraftJob:
            with Session(db) as session:
                dataset = ds.get_dataset(session, dataset_id)
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
            # A checkout from before the job's parts were timed runs without them.
            timed_parts = "timings" in signature(pipeline.run_job).parameters
            timing: dict[str, Any] = {"timings": parts} if timed_parts else {}
            return pipeline.run_job(
                db,
                job_id=job_id,  # type: ignore[arg-type]
                engine=WithBoxes(engine, args.boxes) if args.boxes else engine,  # type: ignore[arg-type]
                store=content_store(settings),
                max_pixels=settings.draft_max_pixels,
                **timing,
            )

        n = args.images
        seconds: dict[str, float] = {}
        ended: list[jobs.DraftJob] = []
        for name in passes:
            if name == "per-call":
                chunks = [inputs[i : i + size] for i in range(0, len(inputs), size)]
                seconds[name] = timed(lambda chunks=chunks: [engine.draft(c) for c in chunks])
                report["engine_per_call_images_per_s"] = round(n / seconds[name], 3)
            elif name == "streamed":
                seconds[name] = timed(lambda: engine.draft(inputs))
                report["engine_streamed_images_per_s"] = round(n / seconds[name], 3)
            elif name == "job-whole":
                # The same job with the first batch prepared whole once decoded, as before
                # prefetch_decoded: what preparing it in parts while it decodes hides.
                kept = getattr(engine, "prepare_while_decoding", None)
                engine.prepare_while_decoding = False  # type: ignore[attr-defined]
                parts.clear()
                seconds[name] = timed(job)
                engine.prepare_while_decoding = kept  # type: ignore[attr-defined,assignment]
                report["job_whole_images_per_s"] = round(n / seconds[name], 3)
                report["job_whole_parts_s"] = {k: round(v, 3) for k, v in sorted(parts.items())}
                parts.clear()
                spans.clear()
            else:
                seconds[name] = timed(lambda: ended.append(job()))
                report["job_images_per_s"] = round(n / seconds[name], 3)
                # Where the job's time went: inside the engine's calls, and around them
                # (loading the first batch, writing results).
                report["job_in_engine_s"] = round(ended[0].drafting_seconds, 2)
                report["job_outside_engine_s"] = round(seconds[name] - ended[0].drafting_seconds, 2)
                report["job_drafted"], report["job_failed"] = ended[0].done, ended[0].failed
                # The job's own thread, part by part (pipeline.Clock): engine_s is the
                # engine's calls; the rest is what the GPU waited for.
                report["job_parts_s"] = {k: round(v, 3) for k, v in sorted(parts.items())}
                if spans:
                    report["palettes_traced"] = traced(spans)
        db.dispose()
    if "job" in seconds:
        for name in ("per-call", "streamed"):
            if name in seconds:
                key = f"job_vs_engine_{name.replace('-', '_')}"
                report[key] = round(seconds[name] / seconds["job"], 3)
                if "job-whole" in seconds:
                    key = f"job_whole_vs_engine_{name.replace('-', '_')}"
                    report[key] = round(seconds[name] / seconds["job-whole"], 3)
    report["peak_GB"] = round(torch.cuda.max_memory_allocated() / 1e9, 1) if cuda else None
    report["benchmark_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
