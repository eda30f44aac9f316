"""Drafting jobs and their state, persistent in SQLite: create, claim, cancel, progress.

A job lists its images as items. A worker claims the job (one process at a time; a job
whose process died is taken over, so a restart resumes it) and runs it through the batch
pipeline (app/drafting/pipeline.py). One dataset has at most one active job: `create_job`
refuses a second, for the web and the CLI alike.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Engine as DBEngine
from sqlalchemy import update
from sqlmodel import Session, col, select

from app.captions.style_block import block_of
from app.engines.prompt import reference_prompt
from app.errors import Invalid, NotFound
from app.models import (
    Dataset,
    DraftItem,
    DraftJob,
    Image,
    JobStatus,
    utcnow,
)

log = logging.getLogger("atelier.drafting")

Scope = Literal["uncaptioned", "all", "selection"]
HEARTBEAT_STALE_S = 120  # a job silent this long on another host is taken over


def worker_id(pid: int | None = None) -> str:
    """How a job names the process running it: host and pid (this process by default)."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def create_job(
    session: Session,
    *,
    dataset: Dataset,
    engine: str,
    model: str,
    batch_size: int,
    scope: Scope = "uncaptioned",
    image_ids: list[int] | None = None,
    overwrite_edited: bool = False,
    worker: str | None = None,
    base_url: str | None = None,
    trial: bool = False,
) -> DraftJob:
    """A queued job over the images the scope picks; refuses one with nothing to draft.

    With `worker`, the job is created already claimed by that process (the CLI runs its own).
    A dataset has one active job at a time; a re-draft of chosen images may run beside it.
    """
    running = active_job(session, dataset=dataset)
    if running is not None and scope != "selection" and not trial:
        raise Invalid(
            f"Drafting job {running.id} is still running for this dataset; wait or cancel it."
        )
    query = (
        select(Image.id)
        .where(Image.dataset_id == dataset.id, col(Image.trashed_at).is_(None))
        .order_by(col(Image.position))
    )
    if scope == "uncaptioned":
        query = query.where(Image.revision == 0)
    elif scope == "selection":
        if not image_ids:
            raise Invalid("Choose the images to draft.")
        query = query.where(col(Image.id).in_(image_ids))
    ids = list(session.exec(query))
    if scope == "selection" and len(ids) != len(set(image_ids or [])):
        raise Invalid("Some chosen images are not in this dataset.")
    if not ids:
        raise Invalid(
            "No image to draft: every image already has a caption. Re-draft them to replace "
            "the drafts."
        )
    job = DraftJob(
        dataset_id=dataset.id,  # type: ignore[arg-type]
        engine=engine,
        model=model,
        batch_size=batch_size,
        overwrite_edited=overwrite_edited,
        total=len(ids),
        prompt=reference_prompt(
            style_block=block_of(dataset), instructions=dataset.draft_instructions
        ),
        base_url=base_url,
        trial=trial,
    )
    if worker is not None:
        job.status, job.worker = JobStatus.running, worker
        job.started_at = job.heartbeat_at = utcnow()
    session.add(job)
    session.flush()
    session.add_all([DraftItem(job_id=job.id, image_id=i) for i in ids])  # type: ignore[arg-type]
    session.commit()
    session.refresh(job)
    return job


def mark_failed(db: DBEngine, job_id: int, message: str) -> DraftJob:
    """Ends the job as failed with the sentence that says why."""
    with Session(db, expire_on_commit=False) as session:
        job = get_job(session, job_id)
        job.status, job.error, job.finished_at = JobStatus.failed, message, utcnow()
        session.add(job)
        session.commit()
        return job


def get_job(session: Session, job_id: int) -> DraftJob:
    job = session.get(DraftJob, job_id)
    if job is None:
        raise NotFound(f"No drafting job has id {job_id}.")
    return job


def cancel_job(session: Session, job: DraftJob) -> DraftJob:
    """Asks the worker to stop after its current batch; a queued job stops at once."""
    if job.status in (JobStatus.done, JobStatus.cancelled, JobStatus.failed):
        return job
    job.cancel_requested = True
    if job.status == JobStatus.queued:
        job.status = JobStatus.cancelled
        job.finished_at = utcnow()
    session.add(job)
    session.commit()
    return job


def claim(session: Session, *, worker: str, job_id: int | None = None) -> DraftJob | None:
    """Takes the oldest runnable job (or `job_id`): queued, or running in a dead process.
    A test of an engine (one image, a person waiting on it) goes before the others."""
    candidates = session.exec(
        select(DraftJob)
        .where(col(DraftJob.status).in_([JobStatus.queued, JobStatus.running]))
        .where(col(DraftJob.cancel_requested).is_(False))
        .where(DraftJob.id == job_id if job_id is not None else col(DraftJob.id) > 0)
        .order_by(col(DraftJob.trial).desc(), col(DraftJob.id))
    ).all()
    for job in candidates:
        if job.status == JobStatus.running and job.worker != worker and _alive(job):
            continue
        same_worker = (
            col(DraftJob.worker).is_(None)
            if job.worker is None
            else col(DraftJob.worker) == job.worker
        )
        taken = session.execute(
            update(DraftJob)
            .where(col(DraftJob.id) == job.id, same_worker)
            .where(col(DraftJob.status).in_([JobStatus.queued, JobStatus.running]))
            .values(
                status=JobStatus.running,
                worker=worker,
                heartbeat_at=utcnow(),
                started_at=job.started_at or utcnow(),
            )
        )
        session.commit()
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            session.refresh(job)
            return job
    return None


def _alive(job: DraftJob) -> bool:
    """Whether the process named in job.worker still runs (or, elsewhere, still beats)."""
    host, _, pid = (job.worker or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    beat = job.heartbeat_at
    if beat is None:
        return False
    if beat.tzinfo is None:
        beat = beat.replace(tzinfo=UTC)
    return (datetime.now(UTC) - beat).total_seconds() < HEARTBEAT_STALE_S


@dataclass
class Progress:
    job: DraftJob
    rate: float | None  # images a second
    eta_s: float | None

    def as_dict(self) -> dict:
        j = self.job
        return {
            "id": j.id,
            "dataset_id": j.dataset_id,
            "status": j.status.value,
            "engine": j.engine,
            "model": j.model,
            "batch_size": j.batch_size,
            "total": j.total,
            "done": j.done,
            "failed": j.failed,
            "skipped": j.skipped,
            "images_per_s": round(self.rate, 3) if self.rate else None,
            "eta_s": round(self.eta_s, 1) if self.eta_s is not None else None,
            "error": j.error,
            "cancel_requested": j.cancel_requested,
        }


def progress(job: DraftJob) -> Progress:
    finished = job.done + job.failed + job.skipped
    rate = job.done / job.drafting_seconds if job.drafting_seconds > 0 and job.done else None
    eta = (job.total - finished) / rate if rate and job.status == JobStatus.running else None
    return Progress(job, rate, eta)


def servers_json(stats: list[dict[str, Any]] | None) -> str | None:
    """An engine's per-server progress as the job's row keeps it (None: it drafts on none)."""
    return None if stats is None else json.dumps(stats)


def write_server_stats(db: DBEngine, job_id: int, stats: list[dict[str, Any]] | None) -> None:
    """Replaces the job's per-server progress, with a heartbeat (outside the batch loop's
    session: as a job starts, and as it fails)."""
    if stats is None:
        return
    with Session(db) as session:
        session.execute(
            update(DraftJob)
            .where(col(DraftJob.id) == job_id)
            .values(server_stats=servers_json(stats), heartbeat_at=utcnow())
        )
        session.commit()


def read_server_stats(job: DraftJob) -> list[dict[str, Any]]:
    """Each server's images done and images/s for the job; empty when it has none."""
    try:
        data = json.loads(job.server_stats or "[]")
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def items(session: Session, job: DraftJob) -> list[tuple[DraftItem, Image]]:
    return list(
        session.exec(
            select(DraftItem, Image)
            .join(Image, col(Image.id) == DraftItem.image_id)
            .where(DraftItem.job_id == job.id)
            .order_by(col(Image.position))
        )
    )


def pending_job_ids(session: Session) -> list[int]:
    """Jobs a worker could take: queued, or running in a process that is gone."""
    jobs = session.exec(
        select(DraftJob)
        .where(col(DraftJob.status).in_([JobStatus.queued, JobStatus.running]))
        .where(col(DraftJob.cancel_requested).is_(False))
        .order_by(col(DraftJob.id))
    ).all()
    return [j.id for j in jobs if j.status == JobStatus.queued or not _alive(j)]  # type: ignore[misc]


def cancel_dataset_jobs(session: Session, *, dataset: Dataset) -> list[DraftJob]:
    """Cancels every queued or running job of `dataset` (deleted: nothing of it is drafted)."""
    live = session.exec(
        select(DraftJob).where(
            DraftJob.dataset_id == dataset.id,
            col(DraftJob.status).in_([JobStatus.queued, JobStatus.running]),
        )
    ).all()
    return [cancel_job(session, job) for job in live]


def latest_jobs(session: Session, *, dataset: Dataset, limit: int = 5) -> list[DraftJob]:
    """The dataset's newest jobs (the drafting card's tests of an engine left out)."""
    return list(
        session.exec(
            select(DraftJob)
            .where(DraftJob.dataset_id == dataset.id, col(DraftJob.trial).is_(False))
            .order_by(col(DraftJob.id).desc())
            .limit(limit)
        )
    )


def active_job(session: Session, *, dataset: Dataset) -> DraftJob | None:
    return session.exec(
        select(DraftJob)
        .where(DraftJob.dataset_id == dataset.id, col(DraftJob.trial).is_(False))
        .where(col(DraftJob.status).in_([JobStatus.queued, JobStatus.running]))
        .order_by(col(DraftJob.id).desc())
    ).first()
