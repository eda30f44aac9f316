"""Deleted datasets on the pages and in the API: listed, restored, deleted for good."""

from __future__ import annotations

from bs4 import BeautifulSoup
from fastapi.testclient import TestClient

from tests import imagefiles as f


def _with_image(client: TestClient, name: str) -> tuple[int, int]:
    dataset_id = client.post("/api/datasets", json={"name": name}).json()["id"]
    files = [("files", ("a.jpg", f.jpeg_bytes(1), "image/jpeg"))]
    image = client.post(f"/api/datasets/{dataset_id}/images", files=files).json()["imported"][0]
    return dataset_id, image["image_id"]


def test_api_lists_restores_and_deletes_for_good(client: TestClient) -> None:
    dataset_id, image_id = _with_image(client, "Tenebrism")
    assert client.get("/api/datasets/deleted").json() == []
    assert client.delete(f"/api/datasets/{dataset_id}").status_code == 204
    listed = client.get("/api/datasets/deleted").json()
    assert [d["id"] for d in listed] == [dataset_id] and listed[0]["gone_for_good_at"]
    restored = client.post(f"/api/datasets/{dataset_id}/restore")
    assert restored.status_code == 200 and restored.json()["image_count"] == 1
    assert client.get(f"/api/images/{image_id}").status_code == 200
    r = client.post(f"/api/datasets/{dataset_id}/restore")
    assert r.status_code == 404 and "nothing to restore" in r.json()["detail"]
    assert client.delete(f"/api/datasets/{dataset_id}?for_good=true").status_code == 204
    assert client.get("/api/datasets/deleted").json() == []
    assert client.get(f"/api/images/{image_id}").status_code == 404
    assert client.post(f"/api/datasets/{dataset_id}/restore").status_code == 404


def test_home_page_lists_a_deleted_dataset_with_restore_and_delete_for_good(
    client: TestClient,
) -> None:
    dataset_id, _ = _with_image(client, "Caravaggisti")
    home = BeautifulSoup(client.get("/").text, "html.parser")
    assert home.select_one("#deleted") is None
    page = client.get(f"/datasets/{dataset_id}/delete").text
    assert "restored from the home page for 30 days" in page and "confirm_name" not in page
    assert client.post(f"/datasets/{dataset_id}/delete", follow_redirects=False).status_code == 303
    home = BeautifulSoup(client.get("/").text, "html.parser")
    row = home.select_one(f"[data-deleted-dataset='{dataset_id}']")
    assert row is not None and "Caravaggisti" in row.text
    assert row.select_one(f"form[action='/datasets/{dataset_id}/restore']") is not None
    confirm = client.get(f"/datasets/{dataset_id}/delete-for-good").text
    assert "cannot be undone" in confirm
    back = client.post(f"/datasets/{dataset_id}/restore", follow_redirects=False)
    assert back.status_code == 303 and back.headers["location"] == f"/datasets/{dataset_id}"
    assert client.get(f"/datasets/{dataset_id}").status_code == 200
    # A live dataset is not deleted for good from this page: it has to be deleted first.
    gone = f"/datasets/{dataset_id}/delete-for-good"
    r = client.post(gone, data={"confirm_name": "Caravaggisti"})
    assert r.status_code == 422 and "first" in r.text
