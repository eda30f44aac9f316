"""Dataset CRUD over the JSON API."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_create_dataset(client: TestClient) -> None:
    r = client.post(
        "/api/datasets",
        json={"name": "Baroque Chiaroscuro", "trigger_word": "bcs", "resolution": 768},
    )
    assert r.status_code == 201
    body = r.json()
    assert (body["name"], body["slug"], body["trigger_word"], body["resolution"]) == (
        "Baroque Chiaroscuro",
        "baroque_chiaroscuro",
        "bcs",
        768,
    )
    assert body["image_count"] == 0
    assert [d["name"] for d in client.get("/api/datasets").json()] == ["Baroque Chiaroscuro"]


def test_create_dataset_defaults_resolution_1024(client: TestClient) -> None:
    assert client.post("/api/datasets", json={"name": "A"}).json()["resolution"] == 1024


def test_create_dataset_duplicate_name_conflicts(client: TestClient, dataset_id: int) -> None:
    r = client.post("/api/datasets", json={"name": "baroque chiaroscuro"})
    assert r.status_code == 409
    assert "already exists" in r.json()["detail"]


def test_create_dataset_invalid_input(client: TestClient) -> None:
    assert client.post("/api/datasets", json={"name": "   "}).status_code == 422
    r = client.post("/api/datasets", json={"name": "x", "resolution": 12})
    assert r.status_code == 422 and "between 256 and 4096" in r.json()["detail"]
    r = client.post("/api/datasets", json={"name": "x", "resolution": "big"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "resolution"
    r = client.post(
        "/api/datasets", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


def test_rename_dataset_updates_slug(client: TestClient, dataset_id: int) -> None:
    r = client.patch(f"/api/datasets/{dataset_id}", json={"name": "Tenebrism", "notes": "n"})
    assert r.status_code == 200
    assert (r.json()["name"], r.json()["slug"], r.json()["notes"]) == (
        "Tenebrism",
        "tenebrism",
        "n",
    )
    assert r.json()["trigger_word"] == "bcs"


def test_slugs_stay_unique(client: TestClient) -> None:
    a = client.post("/api/datasets", json={"name": "Noir!"}).json()
    b = client.post("/api/datasets", json={"name": "Noir?"}).json()
    assert (a["slug"], b["slug"]) == ("noir", "noir_2")


def test_delete_dataset(client: TestClient, dataset_id: int) -> None:
    assert client.delete(f"/api/datasets/{dataset_id}").status_code == 204
    assert client.get(f"/api/datasets/{dataset_id}").status_code == 404
    assert client.delete(f"/api/datasets/{dataset_id}").status_code == 404


def test_unknown_dataset_is_404_with_sentence(client: TestClient) -> None:
    r = client.get("/api/datasets/999/images")
    assert r.status_code == 404 and r.json() == {"detail": "No dataset has id 999."}
