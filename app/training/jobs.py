"""Training jobs: export into the checkout, start AI-Toolkit there, follow it, stop it.

The job lives in SQLite; the trainer is a detached process, so Atelier may stop and start
again while it trains: the supervisor finds it again by pid and start time, or records
how it ended, read from its log.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine as DBEngine
from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import Conflict, Invalid, NotFound
from app.export import profiles
from app.export.writer import ExportOptions, export_dataset, requested_out_dir
from app.gpu import memory_in_use
from app.images.store import ContentStore
from app.models import Dataset, TrainJob, TrainStatus, utcnow
from app.training import process, resume, runs
from app.training.checkout import Checkout, resolve_checkout
from app.training.config import Plan, for_training

log = logging.getLogger("atelier.training")

ACTIVE = (TrainStatus.running, TrainStatus.stopping)
LOG_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class TrainProgress:
    step: int
    total: int
    rate: float | None
    eta_s: float | None
    loss: float | None
    gpu: str | None
    samples: int
    saved_steps: list[int]
    loss_curve: list[tuple[int, float]]
    phase: str  # what the trainer is doing, in words


def start_training(
    session: Session,
    *,
    settings: Settings,
    store: ContentStore,
    dataset: Dataset,
    profile: str = profiles.DEFAULT_PROFILE,
    steps: int | None = None,
    save_every: int | None = None,
    checkout_dir: str | None = None,
    python: str | None = None,
    force: bool = False,
) -> TrainJob:
    """Exports the dataset into the checkout and starts `python run.py config/<slug>.yaml`."""
    profiles.get_profile(profile)
    running = session.exec(select(TrainJob).where(col(TrainJob.status).in_(ACTIVE))).first()
    if running is not None and refresh(session, settings=settings, job=running).status in ACTIVE:
        raise Conflict(
            f"Training job {running.id} is still running: stop it before starting another "
            "(one GPU, one run)."
        )
    checkout = resolve_checkout(settings=settings, folder=checkout_dir, python=python)
    options = ExportOptions(profile=profile, force=force)
    if steps:
        options = dataclasses.replace(options, steps=steps)
    report = export_dataset(
        session,
        settings=settings,
        store=store,
        dataset=dataset,
        out_dir=requested_out_dir(settings, str(checkout.root)),
        options=options,
    )
    if report.config_path is None:
        raise Invalid("The export wrote no training YAML to start.")
    text, plan = for_training(report.config_path.read_text(), save_every=save_every)
    if resume.saves(plan.run_dir(checkout.root), plan.name):
        # The trainer would resume from the earlier run's checkpoints in that folder instead
        # of starting afresh: a new run gets a folder of its own.
        text, plan = for_training(text, name=_fresh_name(checkout.root, plan))
    _write_atomic(report.config_path, text)
    return _launch(
        session, settings=settings, dataset_id=dataset.id, profile=profile,  # type: ignore[arg-type]
        checkout=checkout, config_path=report.config_path, text=text, plan=plan, start_step=0,
    )  # fmt: skip


def resume_training(
    session: Session, *, settings: Settings, job: TrainJob, more_steps: int | None = None
) -> TrainJob:
    """Starts the run's next leg in its own folder: a stopped run from its newest save, a
    finished one (`more_steps`) from its final checkpoint, for that many steps more."""
    latest = resume.newest_leg(session, job)
    latest = refresh(session, settings=settings, job=latest)
    if latest.status in ACTIVE:
        raise Conflict(f"Training job {latest.id} is still running this run: stop it first.")
    running = session.exec(select(TrainJob).where(col(TrainJob.status).in_(ACTIVE))).first()
    if running is not None and refresh(session, settings=settings, job=running).status in ACTIVE:
        raise Conflict(
            f"Training job {running.id} is still running: stop it before resuming another "
            "(one GPU, one run)."
        )
    if latest.status is TrainStatus.done and not more_steps:
        raise Invalid(
            f"Job {latest.id} trained all its {latest.total_steps} steps: continue it for a "
            "number of steps more."
        )
    checkout = resolve_checkout(settings=settings, folder=latest.checkout, python=latest.python)
    text, plan = for_training(latest.config_yaml, steps=latest.total_steps + (more_steps or 0))
    run_dir = Path(latest.run_dir)
    # Only a finished leg's final file is its newest state; after a stop it is an older leg's.
    done = latest.status is TrainStatus.done
    if done and resume.keep_final(run_dir, plan.name, latest.total_steps) is None:
        raise Invalid(
            f"The final checkpoint {plan.name}.safetensors is no longer in {run_dir}: "
            "there is nothing to continue from."
        )
    newest = resume.newest_save(run_dir, plan.name)
    if newest is None:
        raise Invalid(
            f"Job {latest.id} saved no checkpoint before it ended (the first save is at step "
            f"{plan.save_every}): the trainer would start again at step 0. Train it anew."
        )
    at = resume.step_of(newest, final_step=latest.total_steps)
    leg = len(resume.legs_of(session, latest.run_dir)) + 1
    config_path = Path(latest.config_path)
    config_path = config_path.with_name(f"{config_path.stem}-leg{leg}{config_path.suffix}")
    _write_atomic(config_path, text)
    log.info("training job %s: leg %s resumes at step %s from %s", latest.id, leg, at, newest)
    return _launch(
        session, settings=settings, dataset_id=latest.dataset_id, profile=latest.profile,
        checkout=checkout, config_path=config_path, text=text, plan=plan, start_step=at,
    )  # fmt: skip


def _fresh_name(root: Path, plan: Plan) -> str:
    n = 2
    while resume.saves(plan.run_dir(root).with_name(f"{plan.name}_{n}"), f"{plan.name}_{n}"):
        n += 1
    return f"{plan.name}_{n}"


def _launch(
    session: Session, *, settings: Settings, dataset_id: int, profile: str, checkout: Checkout,
    config_path: Path, text: str, plan: Plan, start_step: int,
) -> TrainJob:  # fmt: skip
    # Named before the job exists: the row is written only once the process runs, so a
    # supervisor never sees a job without its process.
    log_path = settings.training_dir / f"train-{utcnow():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}.log"
    rel = config_path.relative_to(checkout.root)
    try:
        pid, started = process.launch(
            python=checkout.python, args=["run.py", str(rel)], cwd=checkout.root, log_path=log_path
        )
    except OSError as e:
        raise Invalid(f"AI-Toolkit could not be started with {checkout.python}: {e}.") from None
    job = TrainJob(
        dataset_id=dataset_id,
        profile=profile,
        checkout=str(checkout.root),
        python=str(checkout.python),
        config_path=str(config_path),
        config_yaml=text,
        run_dir=str(plan.run_dir(checkout.root)),
        log_path=str(log_path),
        total_steps=plan.steps,
        last_step=start_step,
        pid=pid,
        pid_started=started,
    )
    try:
        session.add(job)
        session.commit()
    except Exception:
        process.signal_group(pid, started, signal.SIGKILL)  # no trainer without its job
        raise
    session.refresh(job)
    log.info("training job %s started: pid %s, run %s", job.id, pid, job.run_dir)
    return job


def get_job(session: Session, job_id: int) -> TrainJob:
    job = session.get(TrainJob, job_id)
    if job is None:
        raise NotFound(f"There is no training job {job_id}.")
    return job


def list_jobs(
    session: Session, *, dataset_id: int | None = None, limit: int = 50
) -> list[TrainJob]:
    """Newest first."""
    query = select(TrainJob).order_by(col(TrainJob.id).desc()).limit(limit)
    if dataset_id is not None:
        query = query.where(TrainJob.dataset_id == dataset_id)
    return list(session.exec(query))


def latest_checkout(session: Session) -> str | None:
    """The checkout the last job trained in, to offer again."""
    job = session.exec(select(TrainJob).order_by(col(TrainJob.id).desc())).first()
    return job.checkout if job else None


def log_tail(job: TrainJob) -> str:
    """The end of the trainer's output."""
    try:
        with open(job.log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_BYTES))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def log_head(job: TrainJob, size: int = 256 * 1024) -> str:
    """The start of the trainer's output: where it says which save it resumed from."""
    try:
        with open(job.log_path, "rb") as f:
            return f.read(size).decode("utf-8", errors="replace")
    except OSError:
        return ""


def legs(session: Session, job: TrainJob) -> list[resume.Leg]:
    """The run this job trained, leg by leg: each job in its folder, where it really began."""
    found = resume.legs_of(session, job.run_dir) or [job]
    return resume.describe(found, {j.id or 0: log_head(j) for j in found})


def refresh(session: Session, *, settings: Settings, job: TrainJob) -> TrainJob:
    """The job brought up to date with its process: still going, escalated, or ended."""
    if job.status not in ACTIVE:
        return job
    alive = process.is_running(job.pid, job.pid_started)
    if alive:
        p = runs.read_progress(log_tail(job), total=job.total_steps)
        if p is not None and p.step != job.last_step:
            job.last_step = p.step
            session.add(job)
            session.commit()
        if job.status is TrainStatus.stopping and job.stop_requested_at is not None:
            _escalate(job, settings)
        return job
    return _finish(session, job)


def refresh_all(db: DBEngine, *, settings: Settings) -> None:
    """Every running job checked once (at start-up this re-attaches to the survivors)."""
    with Session(db) as session:
        for job in list(session.exec(select(TrainJob).where(col(TrainJob.status).in_(ACTIVE)))):
            refresh(session, settings=settings, job=job)


def request_stop(session: Session, *, settings: Settings, job: TrainJob) -> TrainJob:
    """Asks the trainer to stop as Ctrl+C does; the supervisor kills it after the grace time."""
    job = refresh(session, settings=settings, job=job)
    if job.status not in ACTIVE:
        raise Conflict(f"Training job {job.id} has already ended ({job.status.value}).")
    if job.status is TrainStatus.running:
        job.status, job.stop_requested_at = TrainStatus.stopping, utcnow()
        session.add(job)
        session.commit()
        assert job.pid is not None and job.pid_started is not None
        process.signal_group(job.pid, job.pid_started, signal.SIGINT)
        if settings.train_stop_grace_s == 0:
            _escalate(job, settings)
    return refresh(session, settings=settings, job=job)


def progress(job: TrainJob) -> TrainProgress:
    """What the job page shows: step of total, speed, time left, loss, GPU memory, saves."""
    tail = log_tail(job)
    p = runs.read_progress(tail, total=job.total_steps)
    run_dir = Path(job.run_dir)
    cfg = runs.read_config(run_dir, job.config_yaml)
    saved = sorted(runs.checkpoints(run_dir, cfg.name).by_step) if cfg else []
    curve = runs.loss_points(run_dir)
    active = job.status in ACTIVE
    phase = "ended"
    if active:
        recent = tail[-3000:]
        # A resumed leg starts at its save step, loading the model like any start.
        starting = job.last_step == 0 or resume.RESUMING in tail
        if p is None and starting and "Generating" not in recent:
            phase = "loading the model and caching the dataset"
        elif "Generating" in recent and recent.rfind("Generating") > recent.rfind("it/s"):
            phase = "sampling"
        else:
            phase = "training"
    return TrainProgress(
        step=p.step if p else job.last_step,
        total=p.total if p else job.total_steps,
        rate=p.rate if (p and active) else None,
        eta_s=p.eta_s if (p and active) else None,
        loss=curve[-1][1] if curve else (p.loss if p else None),
        gpu=memory_in_use() if active else None,
        samples=len(runs.list_samples(run_dir)),
        saved_steps=saved,
        loss_curve=curve,
        phase=phase,
    )


def smaller_profile(profile: str) -> str | None:
    """The profile below `profile`, for a run that ran out of memory."""
    names = list(profiles.PROFILES)
    if profile not in names:
        return None
    i = names.index(profile)
    return names[i - 1] if i > 0 else None


def _escalate(job: TrainJob, settings: Settings) -> None:
    assert job.stop_requested_at is not None and job.pid and job.pid_started
    asked = job.stop_requested_at
    if asked.tzinfo is None:
        asked = asked.replace(tzinfo=UTC)
    waited = (datetime.now(UTC) - asked).total_seconds()
    if waited >= settings.train_stop_grace_s:
        process.signal_group(job.pid, job.pid_started, signal.SIGKILL)
    elif waited >= settings.train_stop_grace_s / 2:
        process.signal_group(job.pid, job.pid_started, signal.SIGTERM)


def _finish(session: Session, job: TrainJob) -> TrainJob:
    tail = log_tail(job)
    p = runs.read_progress(tail, total=job.total_steps)
    if p is not None:
        job.last_step = p.step
    cfg = runs.read_config(Path(job.run_dir), job.config_yaml)
    final = runs.checkpoints(Path(job.run_dir), cfg.name).final if cfg else None
    if final is not None and _older_than(final, job):
        final = None  # an earlier leg's
    completed = "completed job" in tail and "failure" not in tail.rsplit("Result:", 1)[-1]
    if job.stop_requested_at is not None:
        job.status = TrainStatus.stopped
    elif completed or (final is not None and "Error running job" not in tail):
        job.status = TrainStatus.done
        job.last_step = max(job.last_step, job.total_steps)
    else:
        job.status = TrainStatus.failed
        job.error = runs.why_it_died(tail, smaller_profile=smaller_profile(job.profile))
    job.finished_at = utcnow()
    session.add(job)
    session.commit()
    session.refresh(job)
    log.info("training job %s ended: %s", job.id, job.status.value)
    return job


def _older_than(path: Path, job: TrainJob) -> bool:
    created = job.created_at if job.created_at.tzinfo else job.created_at.replace(tzinfo=UTC)
    try:
        return path.stat().st_mtime < created.timestamp()
    except OSError:
        return True


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.atelier-tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class TrainSupervisor:
    """Checks the running jobs every second: re-attach at start, escalate stops, record ends."""

    def __init__(self, *, db: DBEngine, settings: Settings, interval_s: float = 1.0) -> None:
        self.db, self.settings, self.interval_s = db, settings, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        refresh_all(self.db, settings=self.settings)
        self._thread = threading.Thread(target=self._loop, name="train-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops watching; the trainer itself goes on (it is detached on purpose)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                refresh_all(self.db, settings=self.settings)
            except Exception:  # the watcher must outlive one bad read
                log.exception("training supervisor tick failed")
