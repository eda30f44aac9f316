"""A user's click to its first caption, as the app runs it: no drafting process running.

The real app (create_app, over HTTP through TestClient, its lifespan starting the server's
DraftWorker) over a data folder of one imported 1024 px painting; the local engine set to a
saved model (random weights, the real Qwen tokenizer and chat template, as bench/cold_start.py
saves it; its weights in the page cache as a user's are after the first read). A click is
POST /api/datasets/{id}/draft for that one image; its caption is there when
GET /api/draft-jobs/{job} says done. Each app start is a fresh server process's worth of
state: the first click starts the drafting process (spawn, imports, loading the engine, one
caption); a second click finds it running with the model loaded (a re-draft).

Where the first click's time goes, from outside the process: click to the process existing
(the server's supervisor), to the job claimed (Python's start, the worker's imports, its
database), to done less drafting (opening the engine: torch, transformers and xgrammar
imported, weights, grammar), drafting (the engine's call), landing. Also the imports alone
in a fresh process, timed.

Run twice over one data folder and one set of compiler caches (--starts 2): the first start
with empty caches (first-ever: Triton, the grammar), the next with the caches it left.

    python bench/click_to_caption.py 2b [--starts 2] [--wait S] [--folder DIR] [--models DIR]
    python bench/click_to_caption.py tiny    # a CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

IMPORTS = (
    "import app.drafting.worker",
    "import torch",
    "import transformers",
    "import xgrammar",
    "import app.engines.local.engine",
)


def _epoch(value: str | datetime | None) -> float | None:
    if value is None:
        return None
    stamp = datetime.fromisoformat(value) if isinstance(value, str) else value
    if stamp.tzinfo is None:  # SQLite keeps them naive, in UTC
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def save_model(shape: str, folder: Path, models: Path) -> float:
    """The benchmark's model saved as a user's download is, with the real Qwen files."""
    import torch

    from bench.draft import load_model

    t = time.perf_counter()
    model, processor = load_model(shape, "qwen", models)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return round(time.perf_counter() - t, 1)


def import_times(env: dict[str, str]) -> dict[str, float]:
    """Each import, cumulatively, in one fresh process (what the drafting process pays)."""
    code = (
        "import time, json; t = time.perf_counter(); out = {}\n"
        + "".join(
            f"{line}\nout[{line!r}] = round(time.perf_counter() - t, 2)\n" for line in IMPORTS
        )
        + "print('RESULT ' + json.dumps(out))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if not lines:
        return {"failed": out.returncode, "stderr": out.stderr[-500:]}  # type: ignore[dict-item]
    return json.loads(lines[-1].removeprefix("RESULT "))


def one_start(data: Path, folder: Path, device: str | None, clicks: int, wait: float) -> dict:
    """An app over `data`, started, clicked `clicks` times, the first `wait` seconds after
    it started (a person opening a page first), stopped (all in this process; the drafting
    process is the app's own child)."""
    import psutil
    from fastapi.testclient import TestClient
    from sqlmodel import Session

    from app import datasets as ds
    from app.config import Settings
    from app.db import make_engine, migrate
    from app.images.importer import import_sources
    from app.images.sources import walk_paths
    from app.web.app import create_app

    settings = Settings(  # type: ignore[call-arg]
        data_dir=data / "data",
        draft_engine="local",
        draft_model=str(folder),
        draft_batch=0,
        draft_device=device,
        draft_max_pixels=1024 * 1024,
    )
    db = make_engine(settings)
    migrate(db)
    with Session(db) as session:
        try:
            dataset = ds.find_dataset(session, "Click")
        except Exception:
            dataset = ds.create_dataset(session, name="Click")
            sources, _ = walk_paths([data / "src"])
            import_sources(session, settings=settings, dataset=dataset, sources=sources)
        dataset_id = dataset.id
    db.dispose()
    report: dict = {"clicks": []}
    t = time.perf_counter()
    app = create_app(settings)
    with TestClient(app) as client:
        report["app_start_s"] = round(time.perf_counter() - t, 2)
        image_id = client.get(f"/api/datasets/{dataset_id}/images").json()
        image_id = (image_id.get("images") if isinstance(image_id, dict) else image_id)[0]["id"]
        time.sleep(wait)
        report["process_before_click"] = app.state.draft_worker.pid is not None
        for _ in range(clicks):
            clicked = time.time()
            t = time.perf_counter()
            job = client.post(
                f"/api/datasets/{dataset_id}/draft",
                json={"scope": "selection", "image_ids": [image_id]},
            ).json()
            pid = None
            while True:
                state = client.get(f"/api/draft-jobs/{job['id']}").json()
                pid = pid or app.state.draft_worker.pid
                if state["status"] in ("done", "failed", "cancelled"):
                    break
                time.sleep(0.02)
            took = time.perf_counter() - t
            click = {"click_to_caption_s": round(took, 2), "status": state["status"]}
            click |= _phases(settings, job["id"], clicked, pid, psutil)
            report["clicks"].append(click)
            print(json.dumps({"click": click}), flush=True)
    return report


def _phases(settings: object, job_id: int, clicked: float, pid: int | None, psutil: object) -> dict:
    """The job's own timestamps, against the click and the drafting process's start."""
    from sqlmodel import Session

    from app.db import make_engine
    from app.models import DraftJob

    db = make_engine(settings)  # type: ignore[arg-type]
    with Session(db) as session:
        job = session.get(DraftJob, job_id)
        assert job is not None
        started, finished = _epoch(job.started_at), _epoch(job.finished_at)
        drafting = job.drafting_seconds
        done, failed = job.done, job.failed
    db.dispose()
    out: dict = {"done": done, "failed": failed, "drafting_s": round(drafting, 2)}
    spawned = None
    if pid is not None:
        try:
            spawned = psutil.Process(pid).create_time()  # type: ignore[attr-defined]
        except Exception:
            spawned = None
    if spawned is not None and spawned >= clicked - 1:
        out["click_to_process_s"] = round(spawned - clicked, 2)
        if started is not None:
            out["process_to_claimed_s"] = round(started - spawned, 2)
    if started is not None:
        out["click_to_claimed_s"] = round(started - clicked, 2)
        if finished is not None:
            out["claimed_to_done_s"] = round(finished - started, 2)
            out["claimed_to_done_less_drafting_s"] = round(finished - started - drafting, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=["2b", "7b", "qwen3-4b", "qwen3-8b", "tiny"])
    ap.add_argument("--starts", type=int, default=2, help="app starts over one data folder")
    ap.add_argument("--clicks", type=int, default=2, help="clicks an app start")
    ap.add_argument("--wait", type=float, default=0.0, help="seconds from start to click")
    ap.add_argument("--folder", type=Path, default=None, help="where the model is saved")
    ap.add_argument("--models", type=Path, default=None, help="real Qwen files")
    args = ap.parse_args()
    import numpy as np
    import torch
    from PIL import Image

    from tests.support.random_model import REAL_MODELS

    cuda = torch.cuda.is_available()
    report: dict = {
        "shape": args.shape,
        "gpu": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cores": os.cpu_count(),
    }
    root = Path(tempfile.mkdtemp())
    folder = args.folder or root / "model"
    if not (folder / "config.json").is_file():
        report["save_s"] = save_model(args.shape, folder, args.models or REAL_MODELS)
    (root / "src").mkdir()
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))
    small.resize((1024, 1024), Image.Resampling.BICUBIC).save(root / "src" / "0.png")
    caches = root / "caches"
    # The app's children inherit these: compiler caches as empty as a first-ever start's.
    os.environ |= {
        "TRITON_CACHE_DIR": str(caches / "triton"),
        "TORCHINDUCTOR_CACHE_DIR": str(caches / "inductor"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    report["imports_s"] = import_times(dict(os.environ))
    print(json.dumps({"imports_s": report["imports_s"]}), flush=True)
    device = None if cuda else "cpu"
    report["starts"] = []
    for n in range(args.starts):
        start = one_start(root, folder, device, args.clicks, args.wait)
        start["caches"] = "empty" if n == 0 else "left by the start before"
        report["starts"].append(start)
        print(json.dumps({"start": start}), flush=True)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
