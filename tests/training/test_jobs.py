"""Training jobs against the stand-in trainer: start, progress, end, stop, re-attach, crash."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session

from app import datasets as ds
from app.models import TrainJob, TrainStatus
from app.training import jobs, process, runs
from tests.training.conftest import make_dataset, set_behaviour


def start(client: TestClient, dataset_id: int, checkout: Path, **kw) -> TrainJob:  # type: ignore[no-untyped-def]
    app = client.app
    with Session(app.state.db) as session:  # type: ignore[attr-defined]
        return jobs.start_training(
            session,
            settings=app.state.settings,  # type: ignore[attr-defined]
            store=app.state.store,  # type: ignore[attr-defined]
            dataset=ds.get_dataset(session, dataset_id),
            checkout_dir=str(checkout),
            **kw,
        )


def wait_for(
    client: TestClient, job_id: int, done: Callable[[TrainJob], bool], timeout: float = 20
) -> TrainJob:
    app = client.app
    deadline = time.monotonic() + timeout
    while True:
        with Session(app.state.db) as session:  # type: ignore[attr-defined]
            job = jobs.refresh(
                session,
                settings=app.state.settings,  # type: ignore[attr-defined]
                job=jobs.get_job(session, job_id),
            )
            if done(job):
                return job
        assert time.monotonic() < deadline, f"job {job_id} stayed {job.status}"
        time.sleep(0.05)


def test_train_runs_to_the_end_and_writes_a_run_folder(client: TestClient, checkout: Path) -> None:
    dataset_id = make_dataset(client)
    job = start(client, dataset_id, checkout, steps=40, save_every=10, profile="24gb")
    assert job.status is TrainStatus.running and job.pid
    assert job.config_path == str(checkout / "config" / "baroque_chiaroscuro.yaml")
    ended = wait_for(client, job.id, lambda j: j.status is not TrainStatus.running)  # type: ignore[arg-type]
    assert ended.status is TrainStatus.done, (ended.error, jobs.log_tail(ended))
    run_dir = Path(ended.run_dir)
    cfg = runs.read_config(run_dir, ended.config_yaml)
    assert cfg is not None and cfg.save_every == 10 and cfg.max_keep == 5
    assert run_dir == checkout / "output" / cfg.name
    samples = runs.list_samples(run_dir)
    assert sorted({s.step for s in samples}) == [0, 10, 20, 30, 40]
    assert len(samples) == 5 * len(cfg.samples)
    saved = runs.checkpoints(run_dir, cfg.name)
    assert sorted(saved.by_step) == [10, 20, 30] and saved.final is not None
    p = jobs.progress(ended)
    assert (p.step, p.total) == (40, 40) and p.saved_steps == [10, 20, 30]
    assert len(p.loss_curve) == 40 and p.loss_curve[0][1] > p.loss_curve[-1][1]
    assert not (checkout / "aitk_db.db").exists()


def test_stop_interrupts_the_trainer_cleanly(client: TestClient, checkout: Path) -> None:
    set_behaviour(checkout, step_s=0.05)
    job = start(client, make_dataset(client), checkout, steps=2000, save_every=10)
    wait_for(client, job.id, lambda j: j.last_step > 2)  # type: ignore[arg-type]
    app = client.app
    with Session(app.state.db) as session:  # type: ignore[attr-defined]
        stopping = jobs.request_stop(
            session,
            settings=app.state.settings,  # type: ignore[attr-defined]
            job=jobs.get_job(session, job.id),  # type: ignore[arg-type]
        )
    assert stopping.status in (TrainStatus.stopping, TrainStatus.stopped)
    ended = wait_for(client, job.id, lambda j: j.status not in jobs.ACTIVE)  # type: ignore[arg-type]
    assert ended.status is TrainStatus.stopped and ended.error is None
    assert "Job stopped" in jobs.log_tail(ended)  # it saw Ctrl+C, it was not killed
    assert not process.is_running(ended.pid, ended.pid_started)


def test_a_trainer_ignoring_the_stop_is_killed_after_the_grace_time(
    client: TestClient, checkout: Path
) -> None:
    # A trainer stuck in CUDA code does not see SIGINT; here one that ignores it outright.
    run = (checkout / "run.py").read_text()
    (checkout / "run.py").write_text(
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + run
    )
    set_behaviour(checkout, step_s=0.05)
    client.app.state.settings.train_stop_grace_s = 0.6  # type: ignore[attr-defined]
    job = start(client, make_dataset(client), checkout, steps=2000, save_every=10)
    wait_for(client, job.id, lambda j: j.last_step > 1)  # type: ignore[arg-type]
    app = client.app
    with Session(app.state.db) as session:  # type: ignore[attr-defined]
        jobs.request_stop(
            session,
            settings=app.state.settings,  # type: ignore[attr-defined]
            job=jobs.get_job(session, job.id),  # type: ignore[arg-type]
        )
    ended = wait_for(client, job.id, lambda j: j.status not in jobs.ACTIVE)  # type: ignore[arg-type]
    assert ended.status is TrainStatus.stopped
    assert "Job stopped" not in jobs.log_tail(ended)
    assert not process.is_running(ended.pid, ended.pid_started)


def test_out_of_memory_names_the_smaller_profile(client: TestClient, checkout: Path) -> None:
    set_behaviour(checkout, oom_at=3)
    job = start(client, make_dataset(client), checkout, steps=40, save_every=10, profile="24gb")
    ended = wait_for(client, job.id, lambda j: j.status not in jobs.ACTIVE)  # type: ignore[arg-type]
    assert ended.status is TrainStatus.failed
    assert ended.error == (
        "The GPU ran out of memory: pick the 16gb profile (it uses less GPU memory) and train "
        "again."
    )


def test_a_second_run_is_refused_while_one_trains(client: TestClient, checkout: Path) -> None:
    from app.errors import Conflict

    set_behaviour(checkout, step_s=0.05)
    dataset_id = make_dataset(client)
    job = start(client, dataset_id, checkout, steps=2000, save_every=10)
    try:
        start(client, dataset_id, checkout, steps=40)
        raise AssertionError("a second run started")
    except Conflict as e:
        assert f"Training job {job.id} is still running" in e.message
    finally:
        assert job.pid and job.pid_started
        process.signal_group(job.pid, job.pid_started, __import__("signal").SIGKILL)


def test_not_a_checkout_is_a_sentence(client: TestClient, tmp_path: Path) -> None:
    from app.errors import Invalid

    (tmp_path / "elsewhere").mkdir()
    for folder, fragment in (
        (tmp_path / "elsewhere", "is not an AI-Toolkit checkout: it has no run.py"),
        (tmp_path / "missing", "There is no folder"),
    ):
        try:
            start(client, make_dataset(client, name=f"D {folder.name}"), folder, steps=10)
            raise AssertionError("started")
        except Invalid as e:
            assert fragment in e.message
