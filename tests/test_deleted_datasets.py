"""Deleting a dataset is undoable: it leaves every list with its images, captions and history
kept, can be restored, and is gone for good only on request or after DELETED_DAYS."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app import datasets as ds
from app.drafting import jobs
from app.errors import Conflict, NotFound
from app.images import catalog
from app.models import Dataset, Image, utcnow
from tests import imagefiles as f

CAPTION = {
    "high_level_description": "A scholar reads by candlelight.",
    "compositional_deconstruction": {"background": "a dark study", "elements": []},
}


def test_a_deleted_dataset_is_restored_with_its_captions(client: TestClient, settings) -> None:  # type: ignore[no-untyped-def]
    dataset_id = client.post("/api/datasets", json={"name": "Tenebrism"}).json()["id"]
    files = [("files", ("a.jpg", f.jpeg_bytes(1), "image/jpeg"))]
    image = client.post(f"/api/datasets/{dataset_id}/images", files=files).json()["imported"][0]
    client.put(f"/api/images/{image['image_id']}/caption", json={"revision": 0, "caption": CAPTION})
    assert client.delete(f"/api/datasets/{dataset_id}").status_code == 204
    assert [d["id"] for d in client.get("/api/datasets").json()] == []
    r = client.get(f"/api/datasets/{dataset_id}")
    assert r.status_code == 404 and "restore it" in r.json()["detail"]
    blob = settings.store_dir / image["sha256"][:2] / image["sha256"]
    engine = client.app.state.db  # type: ignore[attr-defined]
    with Session(engine) as session:
        catalog.collect_garbage(session, store=client.app.state.store)  # type: ignore[attr-defined]
        assert blob.exists()  # its bytes wait with it
        # Its name stays its own until it is deleted for good.
        with pytest.raises(Conflict, match="restore it, or delete it for good"):
            ds.create_dataset(session, name="tenebrism")
        assert [d.id for d in ds.deleted_datasets(session)] == [dataset_id]
        ds.restore_dataset(session, dataset_id)
        with pytest.raises(NotFound):
            ds.restore_dataset(session, dataset_id)
    got = client.get(f"/api/images/{image['image_id']}/caption").json()
    assert got["caption"]["high_level_description"] == CAPTION["high_level_description"]
    assert [d["name"] for d in client.get("/api/datasets").json()] == ["Tenebrism"]


def test_deleted_datasets_go_for_good_after_their_days(client: TestClient, settings) -> None:  # type: ignore[no-untyped-def]
    dataset_id = client.post("/api/datasets", json={"name": "Old"}).json()["id"]
    files = [("files", ("a.jpg", f.jpeg_bytes(2), "image/jpeg"))]
    image = client.post(f"/api/datasets/{dataset_id}/images", files=files).json()["imported"][0]
    blob = settings.store_dir / image["sha256"][:2] / image["sha256"]
    client.delete(f"/api/datasets/{dataset_id}")
    engine = client.app.state.db  # type: ignore[attr-defined]
    with Session(engine) as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None
        dataset.deleted_at = utcnow() - timedelta(days=ds.DELETED_DAYS + 1)
        session.add(dataset)
        session.commit()
        catalog.collect_garbage(session, store=client.app.state.store)  # type: ignore[attr-defined]
        assert session.get(Dataset, dataset_id) is None
        assert session.exec(select(Image)).all() == []
    assert not blob.exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/datasets/{id}"),
        ("POST", "/datasets/{id}/delete"),
    ],
)
def test_deleting_a_dataset_cancels_its_drafting_jobs(
    client: TestClient, method: str, path: str
) -> None:
    # The routes cancel them: datasets.py knows nothing of drafting (test_layout's floors).
    dataset_id = client.post("/api/datasets", json={"name": "Drafted"}).json()["id"]
    files = [("files", ("a.jpg", f.jpeg_bytes(3), "image/jpeg"))]
    client.post(f"/api/datasets/{dataset_id}/images", files=files)
    db = client.app.state.db  # type: ignore[attr-defined]
    with Session(db) as session:
        dataset = ds.get_dataset(session, dataset_id)
        job = jobs.create_job(session, dataset=dataset, engine="local", model="m", batch_size=1)
        job_id = job.id
    r = client.request(method, path.format(id=dataset_id), follow_redirects=False)
    assert r.status_code in (204, 303), r.text
    with Session(db) as session:
        job = jobs.get_job(session, job_id)
        assert job.cancel_requested and job.status.value == "cancelled"
