"""The training pages: the checkout offered from an export, the job's progress and stop."""

from __future__ import annotations

import time
from pathlib import Path

from bs4 import BeautifulSoup
from fastapi.testclient import TestClient

from tests.training.conftest import make_dataset, set_behaviour


def soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def test_an_export_into_a_checkout_offers_to_train_there(
    client: TestClient, checkout: Path
) -> None:
    dataset_id = make_dataset(client)
    r = client.post(f"/datasets/{dataset_id}/export", data={"out_dir": str(checkout)})
    assert r.status_code == 200, r.text
    page = soup(r.text)
    note = page.select_one("[data-checkout-note]").text
    assert (
        note
        == f"{checkout} is an AI-Toolkit checkout: Atelier can train there with "
        + str(checkout / "venv" / "bin" / "python")
        + "."
    )
    form = page.select_one("[data-train-form]")
    assert form["action"] == f"/datasets/{dataset_id}/train"
    assert form.select_one("input[name=aitk_dir]")["value"] == str(checkout)
    # The dataset page has the same form.
    page = soup(client.get(f"/datasets/{dataset_id}").text)
    assert page.select_one("[data-train-section] [data-train-form]") is not None


def test_train_from_the_form_then_follow_and_stop(client: TestClient, checkout: Path) -> None:
    set_behaviour(checkout, step_s=0.05)
    dataset_id = make_dataset(client)
    r = client.post(
        f"/datasets/{dataset_id}/train",
        data={"aitk_dir": str(checkout), "steps": "2000", "save_every": "5"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    url = r.headers["location"]
    deadline = time.monotonic() + 20
    while True:
        part = soup(client.get(f"{url}/progress").text)
        if len(part.select("[data-loss-chart] .save-mark")) >= 1:
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    section = part.select_one("#train-job")
    assert section["hx-trigger"] == "every 2s" and section["data-job-status"] == "running"
    text = " ".join(part.select_one("[data-progress-text]").text.split())
    assert "of 2000" in text and "steps/s" in text and "min left" in text and "loss" in text
    r = client.post(f"{url}/stop", headers={"hx-request": "true"})
    assert r.status_code == 200
    assert soup(r.text).select_one("#train-job")["data-job-status"] in ("stopping", "stopped")
    while (
        soup(client.get(f"{url}/progress").text).select_one("#train-job")["data-job-status"]
        != "stopped"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    listing = soup(client.get("/training").text)
    assert listing.select_one("[data-job] .badge").text == "stopped"


def test_bad_train_requests_are_sentences(client: TestClient, tmp_path: Path) -> None:
    dataset_id = make_dataset(client)
    r = client.post(f"/api/datasets/{dataset_id}/train", json={"aitk_dir": str(tmp_path)})
    assert r.status_code == 422 and "is not an AI-Toolkit checkout" in r.json()["detail"]
    r = client.post(f"/api/datasets/{dataset_id}/train", json={"aitk_dir": "ai-toolkit"})
    assert r.status_code == 422 and "relative" in r.json()["detail"]
    r = client.post(f"/api/datasets/{dataset_id}/train", json={"profile": "7gb", "aitk_dir": "/x"})
    assert r.status_code == 422 and "There is no GPU profile '7gb'" in r.json()["detail"]
    assert client.get("/api/training/jobs/99").status_code == 404


def test_pick_through_the_api(client: TestClient, checkout: Path, tmp_path: Path) -> None:
    dataset_id = make_dataset(client)
    r = client.post(
        f"/api/datasets/{dataset_id}/train",
        json={"aitk_dir": str(checkout), "steps": 20, "save_every": 10},
    )
    job_id = r.json()["id"]
    deadline = time.monotonic() + 20
    while client.get(f"/api/training/jobs/{job_id}").json()["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    board = soup(client.get(f"/board?job={job_id}").text)
    assert board.select_one("[data-live]") is None and not board.select_one("#board-grid[hx-get]")
    loras = tmp_path / "loras"
    loras.mkdir()
    r = client.post(f"/api/training/jobs/{job_id}/pick", json={"step": 10, "to_dir": str(loras)})
    assert r.status_code == 201, r.text
    assert r.json()["copied_to"] == str(loras / "baroque_chiaroscuro_step000010.safetensors")
    r = client.post(f"/api/training/jobs/{job_id}/pick", json={"step": 0, "to_dir": str(loras)})
    assert r.status_code == 422 and "Step 0 is the model before training" in r.json()["detail"]
    r = client.post(f"/api/training/jobs/{job_id}/pick", json={"step": 10, "to_dir": "loras"})
    assert r.status_code == 422 and "relative" in r.json()["detail"]
