"""The drafting card without JavaScript, a failed job kept on the page until dismissed, the
CPU warning, the models on disk and the history of jobs."""

from __future__ import annotations

from pathlib import Path

from bs4 import BeautifulSoup
from fastapi.testclient import TestClient
from sqlmodel import Session

from app import datasets as ds
from app.config import Settings
from app.drafting import available, jobs
from app.models import DraftItem, DraftJob, ItemStatus, JobStatus
from app.web.app import create_app
from tests import imagefiles as f


def _dataset_with_image(client: TestClient) -> tuple[int, int]:
    dataset_id = client.post("/api/datasets", json={"name": "Tenebrism"}).json()["id"]
    files = [("files", ("a.jpg", f.jpeg_bytes(1), "image/jpeg"))]
    image = client.post(f"/api/datasets/{dataset_id}/images", files=files).json()["imported"][0]
    return dataset_id, image["image_id"]


def _job(client: TestClient, dataset_id: int, image_id: int, **fields: object) -> int:
    """A job row as the worker leaves it (no worker process runs it)."""
    with Session(client.app.state.db) as session:  # type: ignore[attr-defined]
        job = DraftJob(dataset_id=dataset_id, engine="local", model="m", batch_size=1, total=1)
        for k, v in fields.items():
            setattr(job, k, v)
        session.add(job)
        session.commit()
        session.add(
            DraftItem(
                job_id=job.id,
                image_id=image_id,
                status=ItemStatus.failed,
                error="the model wrote no JSON",
            )
        )
        session.commit()
        assert job.id is not None
        return job.id


def test_cancel_posted_without_js_goes_back_to_the_dataset(client: TestClient) -> None:
    dataset_id, image_id = _dataset_with_image(client)
    # Run by this live process: the server's drafting supervisor leaves it alone.
    job_id = _job(client, dataset_id, image_id, status=JobStatus.running, worker=jobs.worker_id())
    r = client.post(f"/draft-jobs/{job_id}/cancel", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/datasets/{dataset_id}"
    assert client.get(f"/api/draft-jobs/{job_id}").json()["cancel_requested"] is True
    htmx = client.post(f"/draft-jobs/{job_id}/cancel", headers={"HX-Request": "true"})
    assert htmx.status_code == 200 and 'id="draft-job"' in htmx.text


def test_redraft_posted_without_js_goes_back_to_the_editor(client: TestClient) -> None:
    dataset_id, image_id = _dataset_with_image(client)
    r = client.post(f"/images/{image_id}/draft", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/images/{image_id}"
    assert len(client.get(f"/api/datasets/{dataset_id}/draft-jobs").json()) == 1


def test_a_failed_job_stays_on_the_dataset_page_until_dismissed(client: TestClient) -> None:
    dataset_id, image_id = _dataset_with_image(client)
    job_id = _job(
        client, dataset_id, image_id, status=JobStatus.failed, failed=1, error="CUDA out of memory."
    )
    page = BeautifulSoup(client.get(f"/datasets/{dataset_id}").text, "html.parser")
    card = page.select_one("#draft-job")
    assert card is not None and card["data-job-status"] == "failed"
    assert "CUDA out of memory." in card.text and "the model wrote no JSON" in card.text
    r = client.post(f"/draft-jobs/{job_id}/dismiss", follow_redirects=False)
    assert r.status_code == 303
    page = BeautifulSoup(client.get(f"/datasets/{dataset_id}").text, "html.parser")
    assert page.select_one("#draft-job[data-job-status]") is None
    # The history keeps it, with the image it did not draft.
    history = BeautifulSoup(client.get(f"/datasets/{dataset_id}/draft-jobs").text, "html.parser")
    row = history.select_one(f"tr[data-job='{job_id}']")
    assert row is not None and "the model wrote no JSON" in row.text and "a.jpg" in row.text


def _client(tmp_path: Path, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp_path / "d", _env_file=None, **settings)))  # type: ignore[call-arg]


def test_the_cpu_warning_is_on_the_drafting_card(tmp_path: Path) -> None:
    with _client(tmp_path, draft_device="cpu") as client:
        dataset_id = client.post("/api/datasets", json={"name": "A"}).json()["id"]
        page = BeautifulSoup(client.get(f"/datasets/{dataset_id}").text, "html.parser")
        warning = page.select_one(".draft [data-cpu-warning]")
        assert warning is not None and "minutes an image" in warning.text
        assert "minutes an image" in client.get("/api/draft/engine").json()["cpu_warning"]
    with _client(tmp_path, draft_device="cuda") as client:
        page = BeautifulSoup(client.get(f"/datasets/{dataset_id}").text, "html.parser")
        assert page.select_one("[data-cpu-warning]") is None


def test_models_on_disk_from_the_cache_and_past_folders(tmp_path: Path, session: Session) -> None:
    cache = tmp_path / "hub"
    snap = cache / "models--Qwen--Qwen2-VL-2B-Instruct" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (cache / "models--Qwen--Qwen2-VL-2B-Instruct" / "refs").mkdir()
    (cache / "models--Qwen--Qwen2-VL-2B-Instruct" / "refs" / "main").write_text("abc")
    (snap / "model.safetensors").write_bytes(b"\0" * 4096)
    assert available.cached_models(cache_dir=cache) == [("Qwen/Qwen2-VL-2B-Instruct", 4096, snap)]
    assert available.cached_models(cache_dir=tmp_path / "none") == []
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 1000)
    (folder / "config.json").write_text("{}")
    dataset = ds.create_dataset(session, name="Tenebrism")
    for model in (str(folder), str(tmp_path / "gone"), "Qwen/Qwen2-VL-7B"):
        session.add(DraftJob(dataset_id=dataset.id, engine="local", model=model, batch_size=1))
    session.commit()
    found = available.models_on_disk(session, cache_dir=cache, gpu_gb=1e-6)
    assert [(m.name, m.where, m.size_bytes) for m in found] == [
        ("Qwen/Qwen2-VL-2B-Instruct", "cache", 4096),
        (str(folder), "folder", 1000),
    ]
    assert found[0].fits is False
    assert available.fits_gpu(size_bytes=10 * 2**30, gpu_gb=12.0) is True
    assert available.fits_gpu(size_bytes=11 * 2**30, gpu_gb=12.0) is False
    assert available.fits_gpu(size_bytes=1, gpu_gb=None) is None
