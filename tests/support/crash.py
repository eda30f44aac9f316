"""The crash harness: kill a real server with SIGKILL at random moments, restart it, check
nothing is lost. `bench/crash.py` runs it for 100 trials; tests/hardening/test_crash.py for 3.

Each trial starts `atelier serve` on one data folder (the same across trials, so damage would
accumulate), runs caption saves, uploads, exports and a drafting job against it at once, kills
it at a random moment, and checks, before and after restarting it:

- `PRAGMA integrity_check` is ok and no foreign key dangles;
- every caption save the server acknowledged (200) is there, revision and text;
- every upload it acknowledged is there, bytes intact;
- an interrupted drafting job is resumed by the restarted server (it moves on or finishes);
- no half-written export is visible: every export folder has a manifest whose files all exist
  with their checksums (staging folders are hidden, and removed by the next export);
- every stored image's bytes exist; bytes no image references are only those the app's own
  garbage collection removes (written by an upload whose rows never committed);
- no process the server started outlives it (its decode pool, the pool's forkserver), except
  the trainer, which is meant to: a training run (the tests' stand-in trainer, on a fake
  checkout) started in a trial must be re-attached by the restarted server and go on, or be
  marked ended with a sentence if it ended meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent.parent

TIMEOUT = httpx.Timeout(10.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png(seed: int, size: tuple[int, int] = (160, 120)) -> bytes:
    rnd = random.Random(seed)
    im = Image.new("RGB", size, tuple(rnd.randrange(256) for _ in range(3)))  # type: ignore[arg-type]
    for _ in range(6):  # a few blocks, so near-duplicate detection sees distinct images
        x, y = rnd.randrange(size[0] - 20), rnd.randrange(size[1] - 20)
        im.paste(tuple(rnd.randrange(256) for _ in range(3)), (x, y, x + 20, y + 20))  # type: ignore[arg-type]
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


@dataclass
class Acked:
    """What the server said it had done, before it was killed."""

    saves: dict[int, tuple[int, str]] = field(default_factory=dict)  # image -> its latest
    save_count: int = 0
    uploads: dict[int, str] = field(default_factory=dict)  # image id -> sha256
    exports: int = 0
    export_refusals: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Server:
    def __init__(self, root: Path, model: Path | None) -> None:
        self.data = root / "data"
        self.exports = root / "exports"
        self.model = model
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        port = free_port()
        env = os.environ | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        if self.model is not None:
            env |= {
                "ATELIER_DRAFT_MODEL": str(self.model),
                "ATELIER_DRAFT_DEVICE": "cpu",
                "ATELIER_DRAFT_MAX_PIXELS": str(64 * 28 * 28),
                "ATELIER_DRAFT_MAX_CHARS": "16",
                "ATELIER_DRAFT_MAX_ELEMENTS": "2",
                "ATELIER_DRAFT_MAX_NEW_TOKENS": "400",
                "ATELIER_DRAFT_BATCH": "2",
            }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(self.data),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode} on start")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the server did not answer within 60 s")

    def kill(self) -> list[int]:
        """SIGKILLs the server; returns its descendants' pids, which must then go too."""
        assert self.proc is not None
        family = descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        return family

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def descendants(pid: int) -> list[int]:
    """Child processes, and theirs (Linux /proc; empty elsewhere)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def survivors(pids: list[int], wait_s: float = 10) -> list[int]:
    """Those of `pids` still running after `wait_s` (zombies count as gone)."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]
            except OSError:
                continue
            if state != "Z":
                alive.append(pid)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def setup(server: Server) -> dict[str, int]:
    """Datasets whose captions people edit (and export), the drafting job works through, and
    uploads land in."""
    c = httpx.Client(base_url=server.url, timeout=TIMEOUT)
    edit = c.post("/api/datasets", json={"name": "Edited", "trigger_word": "ed"}).json()["id"]
    draft = c.post("/api/datasets", json={"name": "Drafted", "trigger_word": "dr"}).json()["id"]
    uploads = c.post("/api/datasets", json={"name": "Uploads", "trigger_word": "up"}).json()["id"]
    for ds, first in ((edit, 0), (draft, 1000)):
        files = [("files", (f"{n}.png", png(first + n), "image/png")) for n in range(8)]
        r = c.post(f"/api/datasets/{ds}/images", files=files, timeout=60)
        assert r.status_code in (200, 201), r.text
    return {"edit": edit, "draft": draft, "uploads": uploads}


def start_training(server: Server, dataset: int) -> int | None:
    """A long run of the stand-in trainer on a fake checkout; its job id (None: refused)."""
    from tests.training.conftest import make_checkout

    checkout = server.data.parent / "ai-toolkit"
    if not checkout.exists():
        make_checkout(checkout, step_s=0.05)
    r = httpx.post(
        f"{server.url}/api/datasets/{dataset}/train",
        json={"aitk_dir": str(checkout), "steps": 100_000, "save_every": 100, "force": True},
        timeout=TIMEOUT,
    )
    return int(r.json()["id"]) if r.status_code == 201 else None


def training_pids(url: str) -> set[int]:
    """The trainers the server runs: the processes meant to outlive it."""
    jobs = httpx.get(f"{url}/api/training/jobs", timeout=TIMEOUT)
    if jobs.status_code != 200:
        return set()
    return {j["pid"] for j in jobs.json() if j.get("pid") and j["status"] == "running"}


def check_training(url: str, job: int, wait_s: float) -> list[str]:
    """After a restart: a running trainer is re-attached and moves on; an ended one says why."""
    c = httpx.Client(base_url=url, timeout=TIMEOUT)
    first = c.get(f"/api/training/jobs/{job}").json()
    if first["status"] != "running":
        if not first.get("error") and first["status"] not in ("stopped", "done"):
            return [f"training job {job} ended ({first['status']}) without a sentence"]
        return []
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        now = c.get(f"/api/training/jobs/{job}").json()
        if (now["step"] or 0) > (first["step"] or 0) or now["status"] != "running":
            return []
        time.sleep(0.2)
    return [f"training job {job} was not followed after the restart (step {first['step']})"]


def saver(
    url: str, ids: list[int], acked: Acked, stop: threading.Event, rnd: random.Random
) -> None:
    c = httpx.Client(base_url=url, timeout=TIMEOUT)
    n = 0
    while not stop.is_set():
        image = rnd.choice(ids)
        try:
            current = c.get(f"/api/images/{image}/caption").json()
            n += 1
            text = f"saved {rnd.random():.12f} #{n}"
            caption = current["caption"] or {"compositional_deconstruction": {"elements": []}}
            caption["high_level_description"] = text
            r = c.put(
                f"/api/images/{image}/caption",
                json={"revision": current["revision"], "caption": caption},
            )
        except (httpx.HTTPError, ValueError, KeyError):
            return  # the server is gone
        if r.status_code == 200:
            with acked.lock:
                acked.saves[image] = (r.json()["revision"], text)
                acked.save_count += 1


def uploader(url: str, ds: int, acked: Acked, stop: threading.Event, rnd: random.Random) -> None:
    c = httpx.Client(base_url=url, timeout=TIMEOUT)
    while not stop.is_set():
        data = png(rnd.randrange(10**9), (rnd.randrange(100, 400), rnd.randrange(100, 400)))
        try:
            r = c.post(
                f"/api/datasets/{ds}/images", files=[("files", ("u.png", data, "image/png"))]
            )
        except httpx.HTTPError:
            return
        if r.status_code in (200, 201):
            for row in r.json()["imported"]:
                if row.get("image_id"):
                    with acked.lock:
                        acked.uploads[row["image_id"]] = hashlib.sha256(data).hexdigest()


def exporter(url: str, ds: int, out: Path, acked: Acked, stop: threading.Event) -> None:
    c = httpx.Client(base_url=url, timeout=httpx.Timeout(60.0))
    while not stop.is_set():
        try:
            r = c.post(f"/api/datasets/{ds}/export", json={"out_dir": str(out), "force": True})
        except httpx.HTTPError:
            return
        with acked.lock:
            if r.status_code == 200:
                acked.exports += 1
            else:
                try:
                    detail = str(r.json().get("detail", ""))
                except ValueError:
                    detail = f"{r.status_code}: {r.text[:100]}"
                acked.export_refusals.append(detail[:120])


def check_database(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        problems = []
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        if ok != "ok":
            problems.append(f"integrity_check: {ok}")
        dangling = con.execute("PRAGMA foreign_key_check").fetchall()
        if dangling:
            problems.append(f"dangling foreign keys: {dangling[:5]}")
        return problems
    finally:
        con.close()


def check_store(data: Path) -> tuple[list[str], int]:
    """Every image's bytes exist; returns problems and how many unreferenced blobs GC will take."""
    from app.images.catalog import ORPHAN_GRACE_S

    con = sqlite3.connect(data / "atelier.db")
    referenced = {row[0] for row in con.execute("SELECT DISTINCT sha256 FROM image")}
    con.close()
    stored = {p.name: p for p in (data / "store").glob("*/*") if p.is_file()}
    problems = [f"image bytes missing: {sha[:12]}" for sha in referenced - set(stored)]
    now = time.time()
    orphans = set(stored) - referenced
    stale = [s for s in orphans if now - stored[s].stat().st_mtime >= ORPHAN_GRACE_S]
    problems += [f"orphan older than the GC grace period: {s[:12]}" for s in stale]
    return problems, len(orphans)


def check_exports(out: Path) -> list[str]:
    problems = []
    visible = [p for p in (out / "datasets").glob("*") if p.is_dir() and p.name[0] != "."]
    for manifest_dir in visible if out.exists() else []:
        manifest = manifest_dir / "atelier-manifest.json"
        if not manifest.is_file():
            problems.append(f"export folder without a manifest: {manifest_dir}")
            continue
        for entry in json.loads(manifest.read_text())["images"]:
            png_path = manifest_dir / f"{entry['name']}.png"
            json_path = manifest_dir / f"{entry['name']}.json"
            if not png_path.is_file() or not json_path.is_file():
                problems.append(f"{manifest_dir.name}/{entry['name']}: a file is missing")
                continue
            if hashlib.sha256(png_path.read_bytes()).hexdigest() != entry["png_sha256"]:
                problems.append(f"{manifest_dir.name}/{entry['name']}.png: wrong bytes")
            if hashlib.sha256(json_path.read_bytes()).hexdigest() != entry["json_sha256"]:
                problems.append(f"{manifest_dir.name}/{entry['name']}.json: wrong bytes")
    return problems


def check_after_restart(url: str, acked: Acked, draft_ds: int, job_wait_s: float) -> list[str]:
    c = httpx.Client(base_url=url, timeout=TIMEOUT)
    problems = []
    for image, (revision, text) in acked.saves.items():
        r = c.get(f"/api/images/{image}/caption/revisions/{revision}")
        got = (
            r.json().get("caption", {}).get("high_level_description")
            if r.status_code == 200
            else None
        )
        if got != text:
            problems.append(f"acknowledged save lost: image {image} revision {revision}")
    for image, sha in acked.uploads.items():
        r = c.get(f"/api/images/{image}/file")
        if r.status_code != 200 or hashlib.sha256(r.content).hexdigest() != sha:
            problems.append(f"acknowledged upload lost: image {image}")
    # A job left running must be taken up again by the restarted server. Jobs run one at a
    # time, oldest first: the oldest unfinished one must move on; the rest wait their turn.
    jobs = c.get(f"/api/datasets/{draft_ds}/draft-jobs").json()
    waiting = sorted(
        (j for j in jobs if j["status"] in ("queued", "running")), key=lambda j: j["id"]
    )
    if waiting:
        job = waiting[0]
        before = job["done"] + job["failed"] + job["skipped"]
        deadline = time.monotonic() + job_wait_s
        while time.monotonic() < deadline:
            now = c.get(f"/api/draft-jobs/{job['id']}").json()
            if now["status"] in ("done", "failed", "cancelled") or (
                now["done"] + now["failed"] + now["skipped"] > before
            ):
                break
            time.sleep(0.2)
        else:
            problems.append(f"drafting job {job['id']} did not resume within {job_wait_s:.0f} s")
    return problems


def trial(
    server: Server,
    ids: dict[str, int],
    n: int,
    rnd: random.Random,
    job_wait_s: float,
    training: bool = False,
) -> tuple[list[str], dict]:
    acked, stop = Acked(), threading.Event()
    c = httpx.Client(base_url=server.url, timeout=TIMEOUT)
    edit_ids = [i["id"] for i in c.get(f"/api/datasets/{ids['edit']}/images").json()][:8]
    unfinished = [
        j
        for j in c.get(f"/api/datasets/{ids['draft']}/draft-jobs").json()
        if j["status"] in ("queued", "running")
    ]
    drafting = bool(unfinished)  # one job at a time: a job killed before goes on first
    if training and not training_pids(server.url) and (n == 0 or rnd.random() < 0.5):
        ids["training_job"] = start_training(server, ids["edit"]) or 0
    if server.model is not None and not unfinished and rnd.random() < 0.5:
        c.post(
            f"/api/datasets/{ids['draft']}/draft", json={"scope": "all", "overwrite_edited": True}
        )
        drafting = True
    threads = [
        threading.Thread(
            target=saver, args=(server.url, edit_ids, acked, stop, random.Random(rnd.random()))
        )
        for _ in range(3)
    ]
    threads.append(
        threading.Thread(
            target=uploader,
            args=(server.url, ids["uploads"], acked, stop, random.Random(rnd.random())),
        )
    )
    threads.append(
        threading.Thread(
            target=exporter, args=(server.url, ids["edit"], server.exports, acked, stop)
        )
    )
    for t in threads:
        t.start()
    delay = rnd.uniform(0.2, 2.5)
    time.sleep(delay)
    trainers = training_pids(server.url) if training else set()
    family = [p for p in server.kill() if p not in trainers]
    stop.set()
    for t in threads:
        t.join(timeout=30)
    problems = check_database(server.data / "atelier.db") + check_exports(server.exports)
    store_problems, orphans = check_store(server.data)
    problems += store_problems
    left = survivors(family)
    if left:
        problems.append(f"{len(left)} of the killed server's processes live on: {left[:5]}")
    server.start()
    problems += check_after_restart(server.url, acked, ids["draft"], job_wait_s)
    if ids.get("training_job"):
        problems += check_training(server.url, ids["training_job"], job_wait_s)
    stats = {
        "trial": n,
        "killed_after_s": round(delay, 2),
        "acked_saves": acked.save_count,
        "acked_uploads": len(acked.uploads),
        "exports": acked.exports,
        "export_refusals": sorted(set(acked.export_refusals))[:3],
        "drafting": drafting,
        "training": bool(trainers),
        "unreferenced_blobs": orphans,
        "problems": problems,
    }
    return problems, stats


def run_trials(
    trials: int,
    *,
    seed: int,
    root: Path,
    model: Path | None,
    job_wait_s: float = 60,
    on_trial: Callable[[dict], None] | None = None,
    training: bool = True,
) -> list[dict]:
    rnd = random.Random(seed)
    server = Server(root, model)
    server.start()
    try:
        ids = setup(server)
        results = []
        for n in range(trials):
            results.append(trial(server, ids, n, rnd, job_wait_s, training)[1])
            if on_trial is not None:
                on_trial(results[-1])
        return results
    finally:
        for pid in training_pids(server.url) if server.proc else set():
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        server.stop()
