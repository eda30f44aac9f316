"""A drafting job's CPU work around the engine, measured alone on this host's cores.

Decoding: the first batch's images are decoded before the engine starts (the GPU waits).
The job's PNGs (bench/draft_job.py's, 1024 px) decoded as a job decodes them, on one thread
(the work itself), on 4, 8 and a thread a core, and in the shared process pool.

Element palettes: a drafting job makes each draft's element palettes (one per boxed
element, from crops of the image's 512 px working copy) once the engine has returned the
boxes, and the GPU waits for them. Measured several ways in one run:

- one_core: every draft's palettes one after the other in this process (the work itself);
- pipeline: the job's own code (`pipeline._filled`, the shared process pool, one process a
  core), consumed in order as the job consumes it;
- traced: the same pool and calls, each task timing itself inside its worker, which says
  how busy the workers were (busy / (wall x workers)), when the first task started, and
  how long a task took there against one core's;
- pool_chunks_of_8: the job's pool, eight drafts a task;
- pool_N: the traced fill in a pool of its own of N processes, for half and all the cores;
- threads: a thread a core in this process (Pillow's quantising releases the GIL; the rest
  holds it).

Painting-like 1024 px JPEGs (bench/import.py's), decoded as a job decodes them, drafts of
--elements boxes from bench/draft_pipeline.py.

    python bench/job_cpu.py [--drafts 256] [--elements 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from app.drafting import pipeline  # noqa: E402
from app.engines.interface import DraftInput, DraftOutput, parse_output  # noqa: E402
from app.images.decode import display_rgb  # noqa: E402
from app.images.palettes import Pixels, fill_palettes  # noqa: E402

write_jpegs = importlib.import_module("bench.import").write_jpegs
answer = importlib.import_module("bench.draft_pipeline").answer


def traced_fill(caption: Any, pixels: Pixels) -> tuple[int, float, float]:
    """`fill_palettes` in a worker: its pid and when it started and ended (CLOCK_MONOTONIC,
    the same clock in every process of a Linux host)."""
    started = time.monotonic()
    fill_palettes(caption, pixels)
    return os.getpid(), started, time.monotonic()


def traced_fill_caption(caption: Any, pixels: Pixels) -> tuple[Any, int, float, float]:
    """`traced_fill` that also gives the filled caption (bench/draft_job.py --trace-palettes)."""
    started = time.monotonic()
    filled = fill_palettes(caption, pixels)
    return filled, os.getpid(), started, time.monotonic()


def decoded(blob: Path, side: int) -> tuple[int, int]:
    """A stored file decoded as a job decodes it, in a worker: only its size comes back."""
    return display_rgb(blob.read_bytes(), max_side=side).size


def decoding(paths: list[Path], side: int, pool: Any) -> dict[str, float]:
    """Seconds to decode `paths` as a job does, on 1, 4, 8 and every core's threads, and in
    the process pool (the decoded images not sent back)."""
    out = {}
    workers = os.cpu_count() or 1
    for n in sorted({1, 4, 8, workers}):
        with ThreadPoolExecutor(n) as threads:
            t = time.perf_counter()
            list(threads.map(lambda p: display_rgb(p.read_bytes(), max_side=side), paths))
            out[f"decode_threads_{n}_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    list(pool.map(decoded, paths, [side] * len(paths)))
    out["decode_pool_s"] = round(time.perf_counter() - t, 3)
    return out


def noop() -> int:
    return os.getpid()


def traced_in(size: int, captions: list[Any], pixels: list[Pixels]) -> dict[str, float]:
    """The traced fill in a pool of its own of `size` processes (started and warmed first):
    its seconds and its tasks' median milliseconds there (against one core's, a slowdown
    that shows shared cores or a lower clock under load)."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(size, mp_context=ctx) as own:
        wait([own.submit(noop) for _ in range(size * 4)])
        list(own.map(traced_fill, captions[:size], pixels[:size]))
        t0 = time.monotonic()
        spans = list(own.map(traced_fill, captions, pixels))
        wall = time.monotonic() - t0
    return {
        f"pool_{size}_s": round(wall, 3),
        f"pool_{size}_task_ms_median": round(
            statistics.median(e - s for _, s, e in spans) * 1000, 2
        ),
    }


def cores() -> dict[str, Any]:
    """What this process may use: the CPU count, its affinity, and a cgroup quota if any."""
    quota = None
    for path in ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
        try:
            quota = Path(path).read_text().strip()
            break
        except OSError:
            pass
    return {
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "cgroup_cpu_max": quota,
        "loadavg": os.getloadavg(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--drafts", type=int, default=256)
    ap.add_argument("--elements", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    n = args.drafts
    side = pipeline.decoded_side(Settings().draft_max_pixels)  # type: ignore[call-arg]
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_jpegs(Path(tmp) / "jpegs", n)
        pixels = [Pixels(display_rgb(p.read_bytes(), max_side=side)) for p in paths]
        paintings = importlib.import_module("bench.draft_job").paintings  # imports torch
        pngs = paintings(Path(tmp) / "pngs", n)
        pngs_bytes = [p.read_bytes() for p in pngs]  # read once: the page cache holds them
    caption = parse_output(answer(args.elements), convention="qwen2vl").caption
    assert caption is not None
    captions = [caption] * n
    loaded = pipeline._Loaded(item_ids=list(range(n)), ready=list(range(n)))
    loaded.inputs = [DraftInput(p.img, "") for p in pixels]
    outputs = [DraftOutput(caption=caption, raw="") for _ in range(n)]
    by_id = dict(enumerate(pixels))

    pool = pipeline._palette_pool()
    assert pool is not None, "one core: no pool to measure"
    workers = os.cpu_count() or 1
    pipeline._warm(pool)
    wait([pool.submit(noop) for _ in range(workers * 4)])

    out: dict[str, Any] = {"drafts": n, "elements": args.elements, **cores(), "rounds": []}
    for _ in range(args.rounds):
        r: dict[str, Any] = {}
        with tempfile.TemporaryDirectory() as tmp:
            blobs = []
            for i, data in enumerate(pngs_bytes):
                blobs.append(Path(tmp) / f"{i}.png")
                blobs[-1].write_bytes(data)
            r.update(decoding(blobs, side, pool))
        t = time.perf_counter()
        for c, p in zip(captions, pixels, strict=True):
            fill_palettes(c, p)
        one_core = time.perf_counter() - t
        r["one_core_s"] = round(one_core, 3)

        t = time.perf_counter()
        got = list(pipeline._filled(by_id, loaded, outputs))
        r["pipeline_s"] = round(time.perf_counter() - t, 3)
        assert len(got) == n

        t0 = time.monotonic()
        spans = list(pool.map(traced_fill, captions, pixels))
        wall = time.monotonic() - t0
        busy = sum(end - start for _, start, end in spans)
        r["traced_s"] = round(wall, 3)
        r["traced_processes"] = len({pid for pid, _, _ in spans})
        r["traced_busy_of_wall_x_workers"] = round(busy / (wall * workers), 3)
        r["traced_first_start_ms"] = round((min(s for _, s, _ in spans) - t0) * 1000, 1)
        r["traced_last_end_ms"] = round((max(e for _, _, e in spans) - t0) * 1000, 1)
        r["traced_task_ms_median"] = round(statistics.median(e - s for _, s, e in spans) * 1000, 2)
        r["one_core_task_ms"] = round(one_core / n * 1000, 2)

        t = time.perf_counter()
        list(pool.map(fill_palettes, captions, pixels, chunksize=8))
        r["pool_chunks_of_8_s"] = round(time.perf_counter() - t, 3)
        for size in sorted({workers // 2, workers}):
            r.update(traced_in(size, captions, pixels))

        with ThreadPoolExecutor(workers) as threads:
            t = time.perf_counter()
            list(threads.map(fill_palettes, captions, pixels))
            r["threads_s"] = round(time.perf_counter() - t, 3)
        r["pipeline_of_ideal"] = round(one_core / workers / r["pipeline_s"], 3)
        out["rounds"].append(r)
        print(json.dumps(r), flush=True)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
