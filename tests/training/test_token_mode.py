"""Exposed on a network (token mode): no request chooses a program to run, and the paths a
request names (the checkout, run folders, where a LoRA is copied) stay under allowed roots,
symlinks resolved; the training form shows the owner's settings read-only."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from fastapi.testclient import TestClient

from app.config import Settings
from app.training import jobs
from app.web.app import create_app
from tests.training.conftest import make_checkout, make_dataset
from tests.training.runfolders import make_run

TOKEN = "correct-horse-battery-staple"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def exposed(tmp_path: Path, **values: object) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", host="0.0.0.0", token=TOKEN, **values)  # type: ignore[arg-type]
    return TestClient(create_app(settings), base_url="http://atelier.lan:8000", headers=AUTH)


def test_a_request_never_names_the_program_to_run(tmp_path: Path) -> None:
    own = make_checkout(tmp_path / "owner-aitk")
    other = make_checkout(tmp_path / "elsewhere-aitk")
    with exposed(tmp_path, aitk_dir=own) as client:
        dataset_id = make_dataset(client)
        for body in (
            {"aitk_dir": str(other)},
            {"python": "/bin/sh"},
            {"aitk_dir": str(own), "python": str(other / "venv" / "bin" / "python")},
        ):
            r = client.post(f"/api/datasets/{dataset_id}/train", json=body)
            assert r.status_code == 403, r.text
            assert "set by its owner" in r.json()["detail"]
            page = client.post(f"/datasets/{dataset_id}/train", data=body)
            assert page.status_code == 403 and "set by its owner" in page.text
        assert not (other / "config").exists()  # nothing was exported there
        # The form shows the owner's checkout read-only, with no field to change it.
        form = BeautifulSoup(client.get(f"/datasets/{dataset_id}").text, "html.parser")
        assert form.select_one("[data-train-form] [name=aitk_dir]") is None
        assert form.select_one("[data-train-form] [name=python]") is None
        assert str(own) in form.select_one("[data-checkout-fixed]").text
        # Naming nothing trains with the owner's setting, exported into the owner's checkout.
        r = client.post(f"/api/datasets/{dataset_id}/train", json={"steps": 20})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        assert r.json()["checkout"] == str(own.resolve())
        client.post(f"/api/training/jobs/{job_id}/stop")
        deadline = time.monotonic() + 20
        active = {s.value for s in jobs.ACTIVE}
        while client.get(f"/api/training/jobs/{job_id}").json()["status"] in active:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_run_folders_and_pick_targets_stay_under_the_roots(tmp_path: Path) -> None:
    own = make_checkout(tmp_path / "owner-aitk")
    outside = make_run(tmp_path / "outside-aitk")
    inside = make_run(own)
    before = sorted(str(p.relative_to(inside)) for p in inside.rglob("*"))
    link = own / "output" / "sneaky"
    link.symlink_to(outside, target_is_directory=True)
    with exposed(tmp_path, aitk_dir=own) as client:
        assert client.get("/board", params={"run": str(inside)}).status_code == 200
        for refused in (outside, link, tmp_path / "outside" / "nothing-here"):
            r = client.get("/board", params={"run": str(refused)})
            assert r.status_code == 422 and "reads runs only under" in r.text, refused
        dataset_id = make_dataset(client)
        r = client.post(
            "/board/pick",
            data={
                "run": str(inside),
                "step": "0",
                "to_dir": str(tmp_path),
                "dataset_id": dataset_id,
            },
        )
        assert r.status_code == 422 and "exports only under" in r.text
    # The run folder was only read: nothing was written into it.
    assert sorted(str(p.relative_to(inside)) for p in inside.rglob("*")) == before


@pytest.mark.parametrize("name", ["ATELIER_TOKEN", "ATELIER_DRAFT_API_KEY"])
def test_the_trainer_never_sees_atelier_s_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    from app.training.process import launch

    monkeypatch.setenv(name, "s3cret-value-of-atelier")
    script = tmp_path / "env.py"
    script.write_text("import os, sys\nsys.stdout.write('\\n'.join(os.environ))\n")
    log = tmp_path / "env.log"
    launch(python=Path(sys.executable), args=[str(script)], cwd=tmp_path, log_path=log)
    deadline = time.monotonic() + 20
    while "PATH" not in log.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)
    assert name not in log.read_text().split()
