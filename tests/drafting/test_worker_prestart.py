"""The drafting process started with the server, before any job: the first job finds it
running, with the engine's processor and grammar being prepared as it started."""

from __future__ import annotations

import time
from pathlib import Path

from sqlmodel import Session

from app import datasets as ds
from app.config import Settings
from app.db import make_engine, migrate
from app.drafting import jobs
from app.drafting.worker import DraftWorker
from app.images.importer import import_sources
from app.images.sources import walk_paths
from app.models import DraftJob, JobStatus
from tests import imagefiles as f


def _wait(until, seconds: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_prestarted_drafting_process_runs_the_first_job(
    tmp_path: Path, draft_settings: Settings
) -> None:
    db = make_engine(draft_settings)
    migrate(db)
    folder = tmp_path / "src"
    folder.mkdir()
    f.jpeg(folder / "a.jpg", 1, (320, 240))
    with Session(db) as session:
        dataset = ds.create_dataset(session, name="Prestart")
        sources, _ = walk_paths([folder])
        import_sources(session, settings=draft_settings, dataset=dataset, sources=sources)
        dataset_id = dataset.id
    worker = DraftWorker(db=db, settings=draft_settings, prestart=True)
    worker.start()
    try:
        _wait(lambda: worker.pid is not None, 10)  # with no job queued
        pid = worker.pid
        with Session(db) as session:
            job = jobs.create_job(
                session,
                dataset=ds.get_dataset(session, dataset_id),  # type: ignore[arg-type]
                engine="local",
                model=draft_settings.draft_model,
                batch_size=0,
            )
            job_id = job.id
        worker.wake()

        def ended() -> bool:
            with Session(db) as session:
                row = session.get(DraftJob, job_id)
                return row is not None and row.status in (JobStatus.done, JobStatus.failed)

        _wait(ended)
        with Session(db) as session:
            row = session.get(DraftJob, job_id)
            assert row is not None
            assert row.status == JobStatus.done, row.error
            assert row.worker == jobs.worker_id(pid)  # the process started before the job
    finally:
        worker.stop()
        db.dispose()


def test_no_prestart_without_a_gpu_or_when_drafting_remotely(draft_settings: Settings) -> None:
    db = make_engine(draft_settings)
    remote = draft_settings.model_copy(update={"draft_engine": "openai"})
    assert DraftWorker(db=db, settings=remote)._prestart is False
    db.dispose()
