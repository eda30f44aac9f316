"""Stop and resume, finish and continue (issue 28 item 4), with the stand-in trainer, which
resumes as AI-Toolkit does (tests/training/fake_aitk/run.py says where in its code)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session

from app.models import TrainStatus
from app.training import jobs, runs
from tests.training.conftest import make_dataset, set_behaviour
from tests.training.test_jobs import start, wait_for


def stop(client: TestClient, job_id: int) -> None:
    r = client.post(f"/api/training/jobs/{job_id}/stop")
    assert r.status_code == 200, r.text
    wait_for(client, job_id, lambda j: j.status not in jobs.ACTIVE)


def saved_step(path: Path) -> int:
    return int(json.loads(path.read_text())["training_info"]["step"])


def test_a_stopped_run_resumes_at_its_newest_save(client: TestClient, checkout: Path) -> None:
    set_behaviour(checkout, step_s=0.03)
    first = start(client, make_dataset(client), checkout, steps=60, save_every=10)
    wait_for(client, first.id, lambda j: j.last_step >= 25)  # type: ignore[arg-type]
    stop(client, first.id)  # type: ignore[arg-type]
    run_dir = Path(first.run_dir)
    name = run_dir.name
    newest = max(runs.checkpoints(run_dir, name).by_step)
    assert newest >= 20
    set_behaviour(checkout, step_s=0.005)
    r = client.post(f"/api/training/jobs/{first.id}/resume", json={})
    assert r.status_code == 201, r.text
    leg = r.json()
    assert leg["run_dir"] == str(run_dir) and leg["id"] != first.id and leg["total"] == 60
    ended = wait_for(client, leg["id"], lambda j: j.status not in jobs.ACTIVE)
    assert ended.status is TrainStatus.done, jobs.log_tail(ended)
    log = jobs.log_tail(ended)
    # The trainer found the newest save and its step, not step 0, and sampled no baseline.
    assert f"Found step {newest} in metadata" in log
    assert "Generating baseline samples" not in log
    assert sorted(runs.checkpoints(run_dir, name).by_step)[-1] == 50
    r = client.get(f"/api/training/jobs/{first.id}").json()
    assert [(g["job"], g["start"], g["kind"]) for g in r["legs"]] == [
        (first.id, 0, "started"),
        (leg["id"], newest, "resumed"),
    ]
    board = client.get(f"/board?job={first.id}").text
    assert "data-legs" in board and f"resumed at step {newest}" in board


def test_a_finished_run_continues_for_more_steps(client: TestClient, checkout: Path) -> None:
    first = start(client, make_dataset(client), checkout, steps=30, save_every=10)
    wait_for(client, first.id, lambda j: j.status is TrainStatus.done)  # type: ignore[arg-type]
    run_dir = Path(first.run_dir)
    name = run_dir.name
    r = client.post(f"/api/training/jobs/{first.id}/resume", json={})
    assert r.status_code == 422 and "number of steps more" in r.json()["detail"]
    r = client.post(f"/api/training/jobs/{first.id}/resume", json={"more_steps": 20})
    assert r.status_code == 201, r.text
    ended = wait_for(client, r.json()["id"], lambda j: j.status not in jobs.ACTIVE)
    assert ended.status is TrainStatus.done and ended.total_steps == 50
    assert "Found step 30 in metadata" in jobs.log_tail(ended)
    saved = runs.checkpoints(run_dir, name)
    # Step 30 was the final file; its weights are kept under the step's own name.
    assert sorted(saved.by_step) == [10, 20, 30, 40]
    assert saved_step(saved.by_step[30]) == 30 and saved.final is not None
    assert saved_step(saved.final) == 50
    samples = {s.step for s in runs.list_samples(run_dir)}
    assert samples == {0, 10, 20, 30, 40, 50}
    loras = checkout.parent / "loras"
    loras.mkdir()
    r = client.post(f"/api/training/jobs/{first.id}/pick", json={"step": 30, "to_dir": str(loras)})
    assert r.status_code == 201, r.text
    assert saved_step(Path(r.json()["copied_to"])) == 30
    page = client.get(f"/training/jobs/{first.id}").text
    assert "data-legs" in page and "continued" in page
    listing = client.get("/training").text
    assert listing.count("data-leg>") == 2 and "leg 2 of 2" in listing


def test_a_new_run_of_the_same_dataset_gets_a_folder_of_its_own(
    client: TestClient, checkout: Path
) -> None:
    dataset_id = make_dataset(client)
    first = start(client, dataset_id, checkout, steps=20, save_every=10)
    wait_for(client, first.id, lambda j: j.status is TrainStatus.done)  # type: ignore[arg-type]
    second = start(client, dataset_id, checkout, steps=20, save_every=10)
    ended = wait_for(client, second.id, lambda j: j.status not in jobs.ACTIVE)  # type: ignore[arg-type]
    # In the first run's folder the trainer would have resumed at its last step and stopped.
    assert ended.run_dir == first.run_dir + "_2"
    assert "RESUMING" not in jobs.log_tail(ended)
    assert len(runs.loss_points(Path(ended.run_dir))) == 20


def test_a_run_stopped_before_its_first_save_cannot_resume(
    client: TestClient, checkout: Path
) -> None:
    set_behaviour(checkout, step_s=0.05)
    first = start(client, make_dataset(client), checkout, steps=400, save_every=200)
    wait_for(client, first.id, lambda j: j.last_step >= 2)  # type: ignore[arg-type]
    stop(client, first.id)  # type: ignore[arg-type]
    r = client.post(f"/api/training/jobs/{first.id}/resume", json={})
    assert r.status_code == 422
    assert "would start again at step 0" in r.json()["detail"]
    with Session(client.app.state.db) as session:  # type: ignore[attr-defined]
        assert len(jobs.list_jobs(session)) == 1


def test_resume_command_continues_a_finished_run(
    client: TestClient, checkout: Path, settings: object
) -> None:
    from typer.testing import CliRunner

    from app.cli import cli

    first = start(client, make_dataset(client), checkout, steps=20, save_every=10)
    wait_for(client, first.id, lambda j: j.status is TrainStatus.done)  # type: ignore[arg-type]
    data = ["--data-dir", str(settings.data_dir)]  # type: ignore[attr-defined]
    result = CliRunner().invoke(cli, ["resume", str(first.id), *data])
    assert result.exit_code == 2 and "number of steps more" in result.output
    result = CliRunner().invoke(cli, ["resume", str(first.id), "--more-steps", "10", *data])
    assert result.exit_code == 0, result.output
    assert "at step 20 of 30" in result.output and "done at step 30 of 30" in result.output


def test_a_resumed_leg_loading_its_model_says_so(tmp_path: Path) -> None:
    from app.models import TrainJob

    log = tmp_path / "train.log"
    log.write_text(
        "Running 1 job\n#### IMPORTANT RESUMING FROM /x/run/run_000000020.safetensors ####\n"
        "Found step 20 in metadata, starting from there\nLoading Qwen3-VL text encoder\n"
    )
    job = TrainJob(
        dataset_id=1, profile="24gb", checkout=str(tmp_path), python="python",
        config_path="c.yaml", config_yaml="", run_dir=str(tmp_path / "run"),
        log_path=str(log), total_steps=60, last_step=20,
    )  # fmt: skip
    assert jobs.progress(job).phase == "loading the model and caching the dataset"
