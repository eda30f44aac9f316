"""The command line end to end, and a run that outlives the Atelier that started it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.config import Settings
from app.models import TrainJob, TrainStatus
from app.training import process
from app.web.app import create_app
from tests.training.conftest import make_dataset, set_behaviour


def atelier(*args: str, settings: Settings, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env, "ATELIER_DATA_DIR": str(settings.data_dir)},
    )


@pytest.mark.slow
def test_train_runs_then_pick_from_the_command_line(
    client: TestClient, settings: Settings, checkout: Path, tmp_path: Path
) -> None:
    make_dataset(client)
    r = atelier(
        "train", "--dataset", "Baroque Chiaroscuro", "--aitk-dir", str(checkout),
        "--steps", "20", "--save-every", "10", "--profile", "16gb", settings=settings,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "job 1 done at step 20 of 20" in r.stdout
    r = atelier("runs", settings=settings)
    assert r.returncode == 0 and " done " in r.stdout and "20/20" in r.stdout
    loras = tmp_path / "loras"
    loras.mkdir()
    r = atelier(
        "pick", "--dataset", "Baroque Chiaroscuro", "--step", "10", "--to", str(loras),
        settings=settings,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert [p.name for p in loras.iterdir()] == ["baroque_chiaroscuro_step000010.safetensors"]


@pytest.mark.slow
def test_command_line_refusals_are_sentences(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    make_dataset(client)
    r = atelier(
        "train", "--dataset", "Baroque Chiaroscuro", "--aitk-dir", str(tmp_path / "nope"),
        settings=settings,
    )  # fmt: skip
    assert r.returncode == 2 and "There is no folder" in r.stderr and "Traceback" not in r.stderr
    r = atelier("train", "--dataset", "Baroque Chiaroscuro", settings=settings)
    assert r.returncode == 2 and "Say where AI-Toolkit is" in r.stderr
    r = atelier(
        "pick", "--dataset", "Baroque Chiaroscuro", "--step", "10", "--to", str(tmp_path),
        settings=settings,
    )  # fmt: skip
    assert r.returncode == 2 and "has no training job" in r.stderr
    r = atelier("stop", "7", settings=settings)
    assert r.returncode == 2 and "There is no training job 7." in r.stderr


def test_a_new_atelier_reattaches_to_a_run_started_by_another(
    client: TestClient, settings: Settings, checkout: Path
) -> None:
    make_dataset(client)
    set_behaviour(checkout, step_s=0.05)
    r = atelier(
        "train", "--dataset", "Baroque Chiaroscuro", "--aitk-dir", str(checkout),
        "--steps", "2000", "--detach", settings=settings,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    # The process that started it is gone; a new server finds the run by pid and start time.
    app = create_app(settings)
    with TestClient(app) as again:
        job = again.get("/api/training/jobs/1").json()
        assert job["status"] == "running"
        deadline = time.monotonic() + 20
        while again.get("/api/training/jobs/1").json()["step"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert again.post("/api/training/jobs/1/stop").status_code == 200
        while again.get("/api/training/jobs/1").json()["status"] != "stopped":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    app.state.db.dispose()


def test_a_run_that_died_while_atelier_was_down_is_marked_ended(
    settings: Settings, client: TestClient, tmp_path: Path
) -> None:
    dataset_id = make_dataset(client)
    gone = subprocess.Popen(["true"])
    gone.wait()
    log = tmp_path / "job.log"
    log.write_text("Running 1 job\ntorch.OutOfMemoryError: CUDA out of memory.\n")
    with Session(client.app.state.db) as session:  # type: ignore[attr-defined]
        for pid, started in ((gone.pid, time.time()), (os.getpid(), 1.0)):
            session.add(
                TrainJob(
                    dataset_id=dataset_id,
                    profile="12gb",
                    checkout="/x",
                    python="/x",
                    config_path="/x",
                    config_yaml="",
                    run_dir=str(tmp_path / "run"),
                    log_path=str(log),
                    pid=pid,
                    pid_started=started,
                )  # fmt: skip
            )
        session.commit()
    # This test process is alive, but it is not the run recorded (its start time differs).
    assert not process.is_running(os.getpid(), 1.0)
    app = create_app(settings)
    with TestClient(app):
        pass
    with Session(app.state.db) as session:
        for job_id in (1, 2):
            job = session.get(TrainJob, job_id)
            assert job is not None and job.status is TrainStatus.failed
            assert job.error == (
                "The GPU ran out of memory: this is already the smallest profile: lower the "
                "resolution or free the GPU."
            )
    app.state.db.dispose()
