"""Drafting jobs: landing drafts without clobbering people's work, retries, cancel, resume
after a killed worker, the API with the app's worker, and the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine as DBEngine
from sqlmodel import Session, select

from app import datasets as ds
from app.captions import revisions
from app.captions.schema import Caption
from app.config import Settings
from app.db import make_engine, migrate
from app.drafting import jobs, pipeline
from app.drafting.open_engine import open_engine
from app.errors import Invalid
from app.images.importer import import_sources
from app.images.sources import walk_paths
from app.images.store import content_store
from app.models import (
    Author,
    CaptionRevision,
    CaptionStatus,
    DraftItem,
    Image,
    ItemStatus,
    JobStatus,
)
from app.web.app import create_app
from tests import imagefiles as f
from tests.drafting.conftest import draft_env
from tests.drafting.remote_jobs import run as run_with


@pytest.fixture
def db(draft_settings: Settings) -> Iterator[DBEngine]:
    engine = make_engine(draft_settings)
    migrate(engine)
    yield engine
    engine.dispose()


def add_images(db: DBEngine, settings: Settings, tmp: Path, n: int, name: str = "Baroque") -> int:
    folder = tmp / f"src-{name}"
    folder.mkdir()
    for i in range(n):
        f.jpeg(folder / f"{i:02d}.jpg", i, (480 + 40 * i, 360))
    with Session(db) as session:
        dataset = ds.create_dataset(session, name=name)
        sources, skipped = walk_paths([folder])
        import_sources(session, settings=settings, dataset=dataset, sources=sources)
        assert dataset.id is not None
        return dataset.id


def images_of(session: Session, dataset_id: int) -> list[Image]:
    return list(
        session.exec(select(Image).where(Image.dataset_id == dataset_id).order_by(Image.position))
    )  # type: ignore[arg-type]


def run(db: DBEngine, settings: Settings, job_id: int, **kw) -> jobs.DraftJob:  # type: ignore[no-untyped-def]
    return run_with(db, settings, job_id, open_engine(settings, **kw))


def new_job(db: DBEngine, dataset_id: int, **kw) -> int:  # type: ignore[no-untyped-def]
    with Session(db) as session:
        dataset = ds.get_dataset(session, dataset_id)
        args = {"dataset": dataset, "engine": "local", "model": "tiny", "batch_size": 2}
        job = jobs.create_job(session, **(args | kw))
        jobs.claim(session, worker=jobs.worker_id(), job_id=job.id)
        assert job.id is not None
        return job.id


@pytest.mark.slow
def test_drafts_land_as_engine_revisions_and_keep_people_s_work(
    db: DBEngine, draft_settings: Settings, tmp_path: Path
) -> None:
    dataset_id = add_images(db, draft_settings, tmp_path, 4)
    with Session(db) as session:
        dataset = ds.get_dataset(session, dataset_id)
        img = images_of(session, dataset_id)
        written = Caption(high_level_description="written by hand")
        revisions.save(session, image=img[1], dataset=dataset, caption=written, base=0)
        revisions.save(session, image=img[2], dataset=dataset, caption=written, base=0)
        revisions.set_status(session, image=img[2], status=CaptionStatus.approved)
    job = run(db, draft_settings, new_job(db, dataset_id, scope="all"))
    assert (job.status, job.done, job.skipped, job.failed) == (JobStatus.done, 2, 2, 0)
    with Session(db) as session:
        img = images_of(session, dataset_id)
        # A person's save is "edited" (the engine's word is "draft"); both kept as they were.
        assert [i.status for i in img] == ["draft", "edited", "approved", "draft"]
        for i in (img[0], img[3]):
            head = revisions.head(session, i)
            assert head is not None and head.author == Author.engine and head.action == "draft"
            caption = revisions.parse(head)
            assert caption.style.color_palette  # from the pixels, not the model
            assert caption.style.medium is not None
        assert revisions.parse(revisions.head(session, img[1])).high_level_description == (  # type: ignore[arg-type]
            "written by hand"
        )
        reasons = {
            item.image_id: item.error
            for item in session.exec(select(DraftItem).where(DraftItem.job_id == job.id))
        }
        assert reasons[img[1].id] == "kept: the caption is edited by hand"
        assert reasons[img[2].id] == "kept: the caption is approved"

    # Asked to, a re-draft replaces them too, and undo brings the hand-written one back.
    job = run(db, draft_settings, new_job(db, dataset_id, scope="all", overwrite_edited=True))
    assert job.done == 4
    with Session(db) as session:
        img = images_of(session, dataset_id)
        dataset = ds.get_dataset(session, dataset_id)
        back = revisions.undo(session, image=img[1], dataset=dataset, base=img[1].revision)
        assert back.caption is not None
        assert back.caption.high_level_description == "written by hand"


def test_the_next_batch_is_loaded_and_prepared_while_one_drafts(
    db: DBEngine, draft_settings: Settings, tmp_path: Path
) -> None:
    from app.engines.local.engine import LocalEngine

    dataset_id = add_images(db, draft_settings, tmp_path, 7)
    with Session(db) as session:  # one image's stored file is gone: failed, the rest go on
        gone = images_of(session, dataset_id)[4]
        content_store(draft_settings).blob_path(gone.sha256).unlink()
    engine = open_engine(draft_settings)
    assert isinstance(engine, LocalEngine)
    prepared: list[int] = []
    drafted: list[int] = []
    prepare, draft = engine._prepare, engine.draft

    def counting_prepare(inputs):  # type: ignore[no-untyped-def]
        prepared.append(len(inputs))
        return prepare(inputs)

    def counting_draft(inputs):  # type: ignore[no-untyped-def]
        hinted = engine._ahead is not None and engine._ahead[0] is inputs
        drafted.append(hinted)
        return draft(inputs)

    engine._prepare, engine.draft = counting_prepare, counting_draft  # type: ignore[method-assign]
    job = pipeline.run_job(
        db,
        job_id=new_job(db, dataset_id),
        engine=engine,
        store=content_store(draft_settings),
        max_pixels=draft_settings.draft_max_pixels,
    )
    assert (job.status, job.done, job.failed) == (JobStatus.done, 6, 1)
    # Batches of two; the missing file leaves one to draft in the third, the fourth is the
    # last image. Each is prepared once, and every batch after the first was prepared ahead,
    # while the one before drafted.
    assert sorted(prepared) == [1, 1, 2, 2]
    assert drafted == [False, True, True, True]


def test_a_job_of_batch_size_zero_drafts_in_the_engine_s_batches(
    db: DBEngine, draft_settings: Settings, tmp_path: Path
) -> None:
    from app.engines.local.engine import AUTO_CPU_BATCH, LocalEngine

    assert Settings.model_fields["draft_batch"].default == 0  # the default: the engine chooses
    dataset_id = add_images(db, draft_settings, tmp_path, 6)
    engine = open_engine(draft_settings.model_copy(update={"draft_batch": 0}))
    assert isinstance(engine, LocalEngine) and engine.auto_batch
    assert engine.batch_size == AUTO_CPU_BATCH == 4  # on a CPU; a GPU measures (GPU test)
    sizes: list[int] = []
    draft = engine.draft

    def counting_draft(inputs):  # type: ignore[no-untyped-def]
        sizes.append(len(inputs))
        return draft(inputs)

    engine.draft = counting_draft  # type: ignore[method-assign]
    job = pipeline.run_job(
        db,
        job_id=new_job(db, dataset_id, batch_size=0),
        engine=engine,
        store=content_store(draft_settings),
        max_pixels=draft_settings.draft_max_pixels,
    )
    assert (job.status, job.done, job.batch_size) == (JobStatus.done, 6, 0)
    assert sizes == [4, 2]


def test_unusable_output_is_retried_once_then_failed_with_raw_kept(
    db: DBEngine, draft_settings: Settings, tmp_path: Path
) -> None:
    dataset_id = add_images(db, draft_settings, tmp_path, 3)
    settings = draft_settings.model_copy(update={"draft_max_new_tokens": 24})
    job = run(db, settings, new_job(db, dataset_id))
    assert (job.status, job.done, job.failed) == (JobStatus.done, 0, 3)
    with Session(db) as session:
        items = session.exec(select(DraftItem).where(DraftItem.job_id == job.id)).all()
        assert {(i.status, i.attempts) for i in items} == {(ItemStatus.failed, 2)}
        assert all(i.raw_output and i.raw_output.startswith('{"high_level') for i in items)
        assert all(i.error == "the answer was cut at the token limit" for i in items)
        assert all(i.revision == 0 for i in images_of(session, dataset_id))


def test_nothing_to_draft_is_refused(
    db: DBEngine, draft_settings: Settings, tmp_path: Path
) -> None:
    dataset_id = add_images(db, draft_settings, tmp_path, 1)
    run(db, draft_settings, new_job(db, dataset_id))
    with pytest.raises(Invalid, match="every image already has a caption") as refused:
        new_job(db, dataset_id)
    assert refused.value.status_code == 422


def test_a_second_job_for_a_dataset_is_refused_while_one_is_active(
    db: DBEngine, draft_settings: Settings, tmp_path: Path
) -> None:
    # The rule lives in jobs.create_job, so the web and `atelier draft` keep it alike.
    dataset_id = add_images(db, draft_settings, tmp_path, 3)
    first = new_job(db, dataset_id)
    with pytest.raises(Invalid, match=f"Drafting job {first} is still running"):
        new_job(db, dataset_id, scope="all")
    with Session(db) as session:
        ids = [i.id for i in images_of(session, dataset_id)]
    # A re-draft of chosen images (the editor's button) may run beside it.
    beside = new_job(db, dataset_id, scope="selection", image_ids=ids[:1])
    assert beside != first
    with Session(db) as session:
        jobs.cancel_job(session, jobs.get_job(session, first))
    assert run(db, draft_settings, first).status == JobStatus.cancelled
    with pytest.raises(Invalid, match=f"Drafting job {beside} is still running"):
        new_job(db, dataset_id, scope="all")
    assert run(db, draft_settings, beside).status == JobStatus.done
    assert new_job(db, dataset_id, scope="all") > beside


def test_images_trashed_after_the_job_was_made_are_skipped_not_drafted(
    db: DBEngine, draft_settings: Settings, tmp_path: Path
) -> None:
    from app.images import trash

    dataset_id = add_images(db, draft_settings, tmp_path, 3)
    job_id = new_job(db, dataset_id)
    with Session(db) as session:
        gone = images_of(session, dataset_id)[1]
        trash.move_to_trash(session, images=[gone])
        gone_id = gone.id
    job = run(db, draft_settings, job_id)
    assert (job.done, job.skipped) == (2, 1)
    with Session(db) as session:
        item = session.exec(select(DraftItem).where(DraftItem.image_id == gone_id)).one()
        assert item.status == ItemStatus.skipped and "trash" in (item.error or "")
        assert session.get(Image, gone_id).revision == 0  # type: ignore[union-attr]


def test_cancel_stops_after_the_batch(
    db: DBEngine, draft_settings: Settings, tmp_path: Path
) -> None:
    dataset_id = add_images(db, draft_settings, tmp_path, 5)
    job_id = new_job(db, dataset_id)

    def cancel(p: jobs.Progress) -> None:
        with Session(db) as session:
            jobs.cancel_job(session, jobs.get_job(session, job_id))

    job = pipeline.run_job(
        db,
        job_id=job_id,
        engine=open_engine(draft_settings),
        store=content_store(draft_settings),
        max_pixels=draft_settings.draft_max_pixels,
        on_progress=cancel,
    )
    assert job.status == JobStatus.cancelled
    assert job.done == 2  # one batch of two
    with Session(db) as session:
        queued = session.exec(
            select(DraftItem).where(
                DraftItem.job_id == job_id, DraftItem.status == ItemStatus.queued
            )
        ).all()
        assert len(queued) == 3


def cli(data: Path, model: Path, *args: str) -> subprocess.Popen[str]:
    env = os.environ | draft_env(model)
    return subprocess.Popen(
        [sys.executable, "-m", "app", *args, "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.slow
def test_a_killed_worker_s_job_is_resumed(
    db: DBEngine, draft_settings: Settings, tiny_qwen2vl: Path, tmp_path: Path
) -> None:
    dataset_id = add_images(db, draft_settings, tmp_path, 8)
    proc = cli(
        draft_settings.data_dir, tiny_qwen2vl, "draft", "--dataset", "Baroque", "--batch", "1"
    )
    assert proc.stderr is not None
    deadline = time.time() + 120
    for line in proc.stderr:
        if line.startswith("drafted 2/8") or time.time() > deadline:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Session(db) as session:
        job = session.exec(select(jobs.DraftJob)).one()
        assert job.status == JobStatus.running and 2 <= job.done < 8
        assert job.id in jobs.pending_job_ids(session)  # its process is gone
        taken = jobs.claim(session, worker="elsewhere:1")
        assert taken is not None and taken.id == job.id
    ended = pipeline.run_job(
        db,
        job_id=job.id,  # type: ignore[arg-type]
        engine=open_engine(draft_settings),
        store=content_store(draft_settings),
        max_pixels=draft_settings.draft_max_pixels,
        worker="elsewhere:1",
    )
    assert (ended.status, ended.done) == (JobStatus.done, 8)
    with Session(db) as session:
        drafts = session.exec(
            select(CaptionRevision).where(CaptionRevision.author == Author.engine)
        ).all()
        assert sorted(r.image_id for r in drafts) == sorted(
            i.id for i in images_of(session, dataset_id)
        )  # type: ignore[misc]


@pytest.mark.slow
def test_cli_drafts_and_reports(
    draft_settings: Settings, tiny_qwen2vl: Path, tmp_path: Path
) -> None:
    db = make_engine(draft_settings)
    migrate(db)
    add_images(db, draft_settings, tmp_path, 2)
    db.dispose()
    proc = cli(draft_settings.data_dir, tiny_qwen2vl, "draft", "--dataset", "Baroque")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert "job 1 done: 2 drafted, 0 failed, 0 kept as they were" in out
    assert "drafted 2/2" in err and "images/s" in err
    again = cli(draft_settings.data_dir, tiny_qwen2vl, "draft", "--dataset", "Baroque")
    out, err = again.communicate(timeout=180)
    assert again.returncode == 2 and "every image already has a caption" in err
    missing = cli(
        draft_settings.data_dir, tmp_path / "nowhere", "draft", "--dataset", "Baroque", "--redraft"
    )
    out, err = missing.communicate(timeout=180)
    assert missing.returncode == 2 and "cannot find the model" in err and "Traceback" not in err


@pytest.mark.slow
def test_api_job_runs_in_the_app_worker(draft_settings: Settings) -> None:
    app = create_app(draft_settings)
    with TestClient(app) as client:
        dataset_id = client.post("/api/datasets", json={"name": "Live"}).json()["id"]
        files = [
            ("files", (f"{i}.jpg", f.jpeg_bytes(i, (500, 400)), "image/jpeg")) for i in range(3)
        ]
        image_ids = [
            o["image_id"]
            for o in client.post(f"/api/datasets/{dataset_id}/images", files=files).json()[
                "imported"
            ]
        ]
        r = client.post(f"/api/datasets/{dataset_id}/draft", json={})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert r.json()["total"] == 3
        state = wait(client, f"/api/draft-jobs/{job_id}")
        assert (state["status"], state["done"]) == ("done", 3)
        assert state["images_per_s"] > 0
        got = client.get(f"/api/images/{image_ids[0]}/caption").json()
        assert (got["author"], got["status"]) == ("engine", "draft")
        # The grid page shows the drafting card.
        page = client.get(f"/datasets/{dataset_id}").text
        assert "Draft captions" in page
        # One-image re-draft from the editor.
        r = client.post(f"/images/{image_ids[1]}/draft", headers={"HX-Request": "true"})
        assert r.status_code == 200 and "redraft-status" in r.text
        redraft = client.get(f"/api/datasets/{dataset_id}/draft-jobs").json()[0]
        state = wait(client, f"/api/draft-jobs/{redraft['id']}")
        assert state["done"] == 1
        final = client.get(f"/draft-jobs/{redraft['id']}/redraft").text
        assert f'hx-get="/images/{image_ids[1]}/editor"' in final
        assert client.get(f"/api/images/{image_ids[1]}/caption").json()["revision"] == 2
        assert client.post("/api/draft-jobs/999/cancel").status_code == 404
    app.state.db.dispose()


def wait(client: TestClient, url: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = client.get(url).json()
        if state["status"] not in ("queued", "running"):
            return state
        time.sleep(0.2)
    raise AssertionError(f"{url} still running: {state}")


@pytest.mark.slow
def test_the_app_drafts_in_a_process_of_its_own_that_it_restarts(
    draft_settings: Settings,
) -> None:
    app = create_app(draft_settings)
    worker = app.state.draft_worker
    with TestClient(app) as client:
        assert worker.pid is None  # nothing to draft: no process, no torch
        dataset_id = client.post("/api/datasets", json={"name": "Proc"}).json()["id"]
        files = [
            ("files", (f"{i}.jpg", f.jpeg_bytes(i, (300, 200)), "image/jpeg")) for i in range(8)
        ]
        client.post(f"/api/datasets/{dataset_id}/images", files=files)

        def claimed_by_new_process(job_id: int, before: set[str]) -> int:
            deadline = time.time() + 120
            while time.time() < deadline:
                with Session(app.state.db) as session:
                    job = session.get(jobs.DraftJob, job_id)
                    assert job is not None
                    if job.status == JobStatus.running and job.worker not in before:
                        pid = int((job.worker or ":0").rpartition(":")[2])
                        assert pid != os.getpid() and pid == worker.pid
                        return pid
                    assert job.status in (JobStatus.queued, JobStatus.running), job.status
                time.sleep(0.05)
            raise AssertionError("no new drafting process took the job")

        # A job that kills its process again and again is failed with a sentence, not retried
        # for ever.
        job_id = client.post(f"/api/datasets/{dataset_id}/draft", json={"batch_size": 1}).json()[
            "id"
        ]
        seen: set[str] = set()
        for _ in range(3):
            pid = claimed_by_new_process(job_id, seen)
            seen.add(jobs.worker_id(pid))
            os.kill(pid, signal.SIGKILL)
        state = wait(client, f"/api/draft-jobs/{job_id}")
        assert state["status"] == "failed"
        assert "died 3 times" in state["error"] and "smaller batch" in state["error"]
        # A process killed mid-job is replaced, and the job goes on to the end.
        job_id = client.post(
            f"/api/datasets/{dataset_id}/draft", json={"scope": "all", "batch_size": 1}
        ).json()["id"]
        first = claimed_by_new_process(job_id, seen)
        os.kill(first, signal.SIGKILL)
        state = wait(client, f"/api/draft-jobs/{job_id}")
        assert (state["status"], state["done"]) == ("done", 8)
        assert worker.pid not in (None, first)

        last = worker._proc
        assert last is not None and last.poll() is None  # idle, the model still loaded
        # Drafting on the CPU, every thread of the process runs only when the CPU is idle.
        policies = {
            int(stat.read_text().rpartition(") ")[2].split()[38])
            for stat in Path(f"/proc/{last.pid}/task").glob("*/stat")
        }
        assert policies == {os.SCHED_IDLE}
    # The server stopping stops its drafting process.
    assert last.poll() is not None and worker.pid is None
    app.state.db.dispose()


def test_every_draft_s_palettes_come_from_its_own_image_s_pixels(tmp_path: Path) -> None:
    """The palettes of a batch are filled several at a time: each caption's, image and element
    palettes alike, must be what its own image gives, one at a time."""
    import json

    from app.drafting.pipeline import decoded_side
    from app.images.decode import display_rgb
    from app.images.palettes import Pixels, fill_palettes
    from tests.drafting.fake_servers import DRAFT, FakeServer, serving
    from tests.drafting.remote_jobs import draft_dataset

    draft = json.loads(json.dumps(DRAFT))
    draft["compositional_deconstruction"]["elements"] = [
        {"type": "obj", "bbox_2d": box, "desc": f"part {n}"}
        for n, box in enumerate([[0, 0, 500, 500], [500, 0, 1000, 400], [200, 500, 900, 1000]])
    ]
    fake = FakeServer("vllm", content=lambda body: json.dumps(draft))
    with serving(fake) as urls:
        job, settings = draft_dataset(tmp_path, urls, images=6)
    assert (job.status, job.done) == (JobStatus.done, 6), job.error
    db = make_engine(settings)
    store = content_store(settings)
    palettes: set[tuple[str, ...]] = set()
    with Session(db) as session:
        for image in session.exec(select(Image)):
            head = revisions.head(session, image)
            assert head is not None
            landed = revisions.parse(head)
            data = store.blob_path(image.sha256).read_bytes()
            pixels = Pixels(display_rgb(data, max_side=decoded_side(settings.draft_max_pixels)))
            expected = fill_palettes(landed, pixels)  # every palette made again from the pixels
            assert landed.style.color_palette == expected.style.color_palette
            got = [e.color_palette for e in landed.composition.elements]
            assert got == [e.color_palette for e in expected.composition.elements]
            assert all(got)
            palettes.add(tuple(landed.style.color_palette))
    db.dispose()
    assert len(palettes) == 6  # six pictures, six palettes: none taken from another image
