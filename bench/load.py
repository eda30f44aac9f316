"""Load: concurrent editors saving captions against a live server, with and without drafting.

32 editors (asyncio, one HTTP client each) autosave captions for 60 s against `atelier serve`
on loopback. Two editors share each image, so their saves conflict: a 409 carries the newest
caption, and the editor saves again over it, as the editor page does. Checked at the end:

- zero errors (anything but 200 and 409);
- zero lost updates: every acknowledged save is a revision of its own, holding its text, and
  each image's caption is its last acknowledged save;
- server latency (its Server-Timing header) p50/p95/p99 of the saves, and the client's round
  trip beside it, against the goal p95 <= 15 ms.

Then the same with a drafting job running in the server (a tiny random Qwen2-VL on the CPU,
so the worker competes with the saves for the same cores), and then with the drafting job
and a training run together: the stand-in trainer of the tests (tests/training/fake_aitk)
writes samples, checkpoints and its loss database while board viewers poll the run's grid as
the board page does (every 5 s) and its progress as the job page does (every 2 s). Each
phase's p95 is printed as a ratio of the editors-alone p95 of the same run (goal: <= 1.5).

    python bench/load.py [--editors 32] [--seconds 60] [--think-ms 700] [--no-drafting]
                         [--no-training] [--viewers 4]

The editor page autosaves 700 ms after the last keystroke, so a person typing without a
break saves about once a second; --think-ms is the mean pause between one editor's saves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.crash import Server, png  # noqa: E402


@dataclass
class Tally:
    server_ms: list[float] = field(default_factory=list)
    client_ms: list[float] = field(default_factory=list)
    acked: list[tuple[int, int, str]] = field(default_factory=list)  # image, revision, text
    conflicts: int = 0
    errors: list[str] = field(default_factory=list)


def server_ms(r: httpx.Response) -> float:
    timing = r.headers.get("server-timing", "app;dur=nan")
    return float(timing.split("dur=")[1])


async def editor(
    url: str, image: int, name: str, until: float, think_s: float, tally: Tally, seed: int
) -> None:
    rnd = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        r = await c.get(f"/api/images/{image}/caption")
        current = r.json()
        n = 0
        while time.monotonic() < until:
            await asyncio.sleep(rnd.uniform(0.5, 1.5) * think_s)
            n += 1
            text = f"{name} save {n}"
            caption = current["caption"] or {"compositional_deconstruction": {"elements": []}}
            caption["high_level_description"] = text
            started = time.perf_counter()
            r = await c.put(
                f"/api/images/{image}/caption",
                json={"revision": current["revision"], "caption": caption},
            )
            tally.client_ms.append((time.perf_counter() - started) * 1000)
            tally.server_ms.append(server_ms(r))
            if r.status_code == 200:
                current = r.json()
                tally.acked.append((image, current["revision"], text))
            elif r.status_code == 409:
                tally.conflicts += 1
                current = r.json()["current"]  # theirs: the editor merges and saves again
            else:
                tally.errors.append(f"{r.status_code}: {r.text[:200]}")


async def viewer(url: str, job: int, until: float, tally: Tally, seed: int) -> None:
    """A board page open on a running job: its grid every 5 s, its progress every 2 s."""
    rnd = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        await asyncio.sleep(rnd.uniform(0, 2))
        tick = 0
        while time.monotonic() < until:
            paths = [f"/training/jobs/{job}/progress"]
            if tick % 5 == 0:
                paths.append(f"/board/grid?job={job}")
            for path in paths:
                r = await c.get(path, headers={"HX-Request": "true"})
                if r.status_code != 200:
                    tally.errors.append(f"viewer {path}: {r.status_code}: {r.text[:200]}")
            tick += 2
            await asyncio.sleep(2)


async def run(
    url: str,
    images: list[int],
    editors: int,
    seconds: float,
    think_s: float,
    job: int | None = None,
    viewers: int = 0,
) -> Tally:
    tally = Tally()
    until = time.monotonic() + seconds
    await asyncio.gather(
        *(
            editor(url, images[i % len(images)], f"editor {i}", until, think_s, tally, i)
            for i in range(editors)
        ),
        *(viewer(url, job, until, tally, i) for i in range(viewers if job else 0)),
    )
    return tally


def lost_updates(url: str, tally: Tally) -> list[str]:
    """Every acknowledged save is its own revision with its text; the last one is current."""
    problems = []
    seen: dict[tuple[int, int], str] = {}
    for image, revision, text in tally.acked:
        if (image, revision) in seen:
            problems.append(f"image {image} revision {revision} acknowledged twice")
        seen[(image, revision)] = text
    with httpx.Client(base_url=url, timeout=30) as c:
        for (image, revision), text in seen.items():
            r = c.get(f"/api/images/{image}/caption/revisions/{revision}")
            if r.json()["caption"]["high_level_description"] != text:
                problems.append(f"image {image} revision {revision} does not hold its save")
        last: dict[int, tuple[int, str]] = {}
        for (image, revision), text in seen.items():
            if revision > last.get(image, (0, ""))[0]:
                last[image] = (revision, text)
        for image, (revision, text) in last.items():
            now = c.get(f"/api/images/{image}/caption").json()
            if now["revision"] != revision or now["caption"]["high_level_description"] != text:
                problems.append(f"image {image}: the last acknowledged save is not current")
    return problems


def pct(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100)[q - 1], 2) if len(values) > 2 else float("nan")


def phase(
    server: Server,
    images: list[int],
    args: argparse.Namespace,
    label: str,
    job: int | None = None,
    baseline_p95: float | None = None,
) -> dict:
    tally = asyncio.run(
        run(
            server.url,
            images,
            args.editors,
            args.seconds,
            args.think_ms / 1000,
            job=job,
            viewers=args.viewers,
        )
    )
    problems = lost_updates(server.url, tally)
    row = {
        "phase": label,
        "editors": args.editors,
        "seconds": args.seconds,
        "saves_acknowledged": len(tally.acked),
        "conflicts_409": tally.conflicts,
        "saves_per_s": round((len(tally.acked) + tally.conflicts) / args.seconds, 1),
        "errors": len(tally.errors),
        "error_examples": tally.errors[:3],
        "lost_updates": len(problems),
        "lost_examples": problems[:3],
        "server_ms_p50": pct(tally.server_ms, 50),
        "server_ms_p95": pct(tally.server_ms, 95),
        "server_ms_p99": pct(tally.server_ms, 99),
        "client_ms_p95": pct(tally.client_ms, 95),
        "goal_p95_ms": 15,
    }
    if baseline_p95:
        row["p95_vs_editors_alone"] = round(row["server_ms_p95"] / baseline_p95, 2)
        row["goal_ratio"] = 1.5
    print(json.dumps(row), flush=True)
    return row


def start_training(c: httpx.Client, root: Path, dataset: int, images: list[int], s: float) -> int:
    """A training run of the stand-in trainer on the editors' dataset, sampling every save."""
    from tests.training.conftest import CAPTION, make_checkout

    checkout = make_checkout(root / "ai-toolkit", step_s=0.05)
    for image in images:  # the export needs captions: the editors' own, made valid
        now = c.get(f"/api/images/{image}/caption").json()
        caption = json.loads(json.dumps(CAPTION))
        c.put(
            f"/api/images/{image}/caption",
            json={"revision": now["revision"], "caption": caption, "merge": True},
        )
    steps = int(s / 0.05) + 200  # still running when the phase ends
    r = c.post(
        f"/api/datasets/{dataset}/train",
        json={"aitk_dir": str(checkout), "steps": steps, "save_every": 50, "force": True},
    )
    r.raise_for_status()
    return int(r.json()["id"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--editors", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument(
        "--think-ms", type=float, default=700, help="mean pause between saves (autosave: 700)"
    )
    ap.add_argument("--no-drafting", action="store_true")
    ap.add_argument("--no-training", action="store_true")
    ap.add_argument("--viewers", type=int, default=4, help="board pages open on the run")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="atelier-load-"))
    model = None
    if not args.no_drafting:
        from tests.support.random_model import save

        model = save(root / "tiny-qwen2-vl", family="qwen2_vl")
    server = Server(root, model)
    server.start()
    rows = []
    try:
        c = httpx.Client(base_url=server.url, timeout=60)
        ds = c.post("/api/datasets", json={"name": "Load", "trigger_word": "ld"}).json()["id"]
        files = [("files", (f"{n}.png", png(n), "image/png")) for n in range(args.editors // 2)]
        c.post(f"/api/datasets/{ds}/images", files=files)
        images = [i["id"] for i in c.get(f"/api/datasets/{ds}/images").json()]
        rows.append(phase(server, images, args, "editors"))
        alone = rows[0]["server_ms_p95"]
        if model is not None:
            other = c.post("/api/datasets", json={"name": "Drafting"}).json()["id"]
            files = [("files", (f"{n}.png", png(5000 + n), "image/png")) for n in range(400)]
            c.post(f"/api/datasets/{other}/images", files=files)
            job = c.post(f"/api/datasets/{other}/draft", json={"scope": "all"}).json()
            rows.append(phase(server, images, args, "editors while drafting", baseline_p95=alone))
            state = c.get(f"/api/draft-jobs/{job['id']}").json()
            print(json.dumps({"drafting_job": {k: state[k] for k in ("status", "done", "total")}}))
        if not args.no_training:
            train = start_training(c, root, ds, images, args.seconds)
            label = "editors while training" + (" and drafting" if model is not None else "")
            rows.append(phase(server, images, args, label, job=train, baseline_p95=alone))
            state = c.get(f"/api/training/jobs/{train}").json()
            print(json.dumps({"training_job": {k: state[k] for k in ("status", "step", "total")}}))
            c.post(f"/api/training/jobs/{train}/stop")
    finally:
        server.stop()
    bad = any(r["errors"] or r["lost_updates"] for r in rows)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
