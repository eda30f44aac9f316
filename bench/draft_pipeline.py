"""A drafting job's own cost around the engine, on the CPU.

Everything `pipeline.run_job` does besides drafting: reading and decoding each image, its
palettes (the image's, and each boxed element's from the model's boxes), and landing every
caption as a revision. The engine is a stand-in that answers at once, through the real
parsing, with a caption of --elements boxes, as a real model's draft has; a random-weight
model (bench/draft_job.py) writes hardly any boxes, so its job hides this cost.

The stand-in takes as long as an engine drafting --engine-rate images/s would (17.24: 2B on
one H200 at batch 256, bench/results/2026-12-01-h200-*), sleeping as a GPU-bound engine
waits, so what the pipeline does beside the engine overlaps as it would: the job's time over
the stand-in's is the whole-job ratio of issue 15, with a GPU that needs no CPU (an
optimistic bound: the real engine's step loop uses a core). --engine-rate 0 answers at once:
the pipeline's whole cost, nothing hidden.

Baseline, same run: the same images' palettes made one after the other on one core, as the
pipeline did until 2026-12-01.

`job_parts_s` says where the job's own thread spent its time (`pipeline.Clock`): the first
batch's load before the engine (load_in_line_s: its rows read, load_read_s, and its images
decoded, load_decode_s), the engine (engine_s), then the tail: the wait for the image
palettes made while it drafted (palettes_wait_image_s), for the element palettes
(palettes_elements_s), and landing the revisions (land_s), all three within
palettes_and_land_s.

    python bench/draft_pipeline.py [--images 256] [--batch 256] [--elements 8] [--engine-rate R]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlmodel import Session  # noqa: E402

from app import datasets as ds  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import make_engine, migrate  # noqa: E402
from app.drafting import jobs, pipeline  # noqa: E402
from app.engines.interface import DraftInput, DraftOutput, Engine, parse_output  # noqa: E402
from app.engines.schema import BoxConvention  # noqa: E402
from app.images.decode import display_rgb  # noqa: E402
from app.images.importer import import_sources  # noqa: E402
from app.images.palettes import Pixels, fill_palettes  # noqa: E402
from app.images.sources import walk_paths  # noqa: E402
from app.images.store import content_store  # noqa: E402

write_jpegs = importlib.import_module("bench.import").write_jpegs  # painting-like 1024 px


def answer(elements: int) -> str:
    """A draft as Qwen2-VL writes it: boxes in 0..1000, of sizes from a tenth to half a side."""
    parts = []
    for n in range(elements):
        x, y = (n * 137) % 700, (n * 251) % 700
        side = 100 + (n * 53) % 400
        box = [x, y, min(x + side, 1000), min(y + side, 1000)]
        parts.append({"type": "obj", "bbox_2d": box, "desc": f"a figure {n}"})
    return json.dumps(
        {
            "high_level_description": "figures by a harbour at dusk",
            "style_description": {"aesthetics": "tonal", "medium": "painting", "technique": "oil"},
            "compositional_deconstruction": {"background": "a harbour", "elements": parts},
        }
    )


class InstantEngine(Engine):
    """Answers every image with the same draft, parsed as the local engine parses, after as
    long as an engine drafting `rate` images/s takes (at once if 0)."""

    name = "local"
    convention: BoxConvention = "qwen2vl"

    def __init__(self, batch_size: int, raw: str, rate: float) -> None:
        self.batch_size = batch_size
        self.raw = raw
        self.rate = rate
        self.seconds = 0.0  # what the engine stood in for took

    def draft(self, inputs: list[DraftInput]) -> list[DraftOutput]:
        if self.rate:
            time.sleep(len(inputs) / self.rate)
            self.seconds += len(inputs) / self.rate
        return [parse_output(self.raw, convention="qwen2vl") for _ in inputs]

    def close(self) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=256, help="the engine's batch size")
    ap.add_argument("--elements", type=int, default=8, help="boxes in each draft")
    ap.add_argument("--engine-rate", type=float, default=17.24, help="images/s; 0: at once")
    args = ap.parse_args()
    n = args.images
    raw = answer(args.elements)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        paths = write_jpegs(src, n)
        settings = Settings(data_dir=Path(tmp) / "data")  # type: ignore[call-arg]
        db = make_engine(settings)
        migrate(db)
        with Session(db) as session:
            dataset = ds.create_dataset(session, name="bench")
            sources, _ = walk_paths([src])
            import_sources(session, settings=settings, dataset=dataset, sources=sources)
            job = jobs.create_job(
                session,
                dataset=dataset,
                engine="local",
                model="instant",
                batch_size=args.batch,
                worker=jobs.worker_id(),
            )
            job_id = job.id
        assert job_id is not None

        # Baseline: each image decoded as a job decodes it, its palettes made one at a time.
        side = pipeline.decoded_side(settings.draft_max_pixels)
        caption = parse_output(raw, convention="qwen2vl").caption
        assert caption is not None
        t = time.perf_counter()
        for p in paths:
            fill_palettes(caption, Pixels(display_rgb(p.read_bytes(), max_side=side)))
        serial = time.perf_counter() - t

        engine = InstantEngine(args.batch, raw, args.engine_rate)
        parts: dict[str, float] = {}
        t = time.perf_counter()
        ended = pipeline.run_job(
            db,
            job_id=job_id,
            engine=engine,
            store=content_store(settings),
            max_pixels=settings.draft_max_pixels,
            timings=parts,
        )
        took = time.perf_counter() - t
        db.dispose()
    assert ended.done == n, (ended.done, ended.failed, ended.error)
    around = (took - ended.drafting_seconds) / n
    print(
        json.dumps(
            {
                "images": n,
                "batch": args.batch,
                "elements": args.elements,
                "cores": os.cpu_count(),
                "job_s": round(took, 2),
                "around_engine_ms_an_image": round(around * 1000, 1),
                "baseline_palettes_one_at_a_time_ms_an_image": round(serial / n * 1000, 1),
                "job_over_baseline": round(took / serial, 3),
                "engine_rate": args.engine_rate,
                "engine_s": round(engine.seconds, 2),
                "job_of_engine": round(engine.seconds / took, 3) if args.engine_rate else None,
                "job_parts_s": {k: round(v, 3) for k, v in parts.items()},
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
