"""The dataset's trash over HTTP: deleting moves images there, restoring brings them back."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

from bs4 import BeautifulSoup
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.images import catalog, trash
from app.models import Image, utcnow
from tests import imagefiles as f

HX = {"HX-Request": "true"}
CAPTION = {
    "high_level_description": "A scholar reads by candlelight.",
    "compositional_deconstruction": {"background": "a dark study", "elements": []},
}


def images(client: TestClient, dataset_id: int, n: int) -> list[int]:
    files = [("files", (f"{i}.jpg", f.jpeg_bytes(i + 1), "image/jpeg")) for i in range(n)]
    r = client.post(f"/api/datasets/{dataset_id}/images", files=files)
    return [o["image_id"] for o in r.json()["imported"]]


def listed(client: TestClient, dataset_id: int) -> list[int]:
    return [i["id"] for i in client.get(f"/api/datasets/{dataset_id}/images").json()]


def engine(client: TestClient):  # type: ignore[no-untyped-def]
    return client.app.state.db  # type: ignore[attr-defined]


def test_delete_moves_to_trash_with_caption_and_restore_brings_it_back(
    client: TestClient, dataset_id: int
) -> None:
    a, b, c = images(client, dataset_id, 3)
    client.put(f"/api/images/{b}/caption", json={"revision": 0, "caption": CAPTION})
    client.put(
        f"/api/images/{b}/caption",
        json={"revision": 1, "caption": CAPTION | {"high_level_description": "Second."}},
    )
    assert client.delete(f"/api/images/{b}").status_code == 204
    assert listed(client, dataset_id) == [a, c]
    summary = client.get(f"/api/datasets/{dataset_id}").json()
    assert summary["image_count"] == 2
    assert summary["status_counts"]["draft"] == 0
    trashed = client.get(f"/api/datasets/{dataset_id}/trash").json()
    assert [t["id"] for t in trashed] == [b]
    assert trashed[0]["filename"] == "1.jpg"
    # Thirty days to restore it.
    assert trashed[0]["expires_at"] > trashed[0]["trashed_at"]
    # The caption and history are kept, and its bytes are still served.
    assert client.get(f"/api/images/{b}/file").status_code == 200
    assert client.get(f"/api/images/{b}").json()["trashed_at"] == trashed[0]["trashed_at"]
    r = client.post(f"/api/datasets/{dataset_id}/trash/restore", json={"image_ids": [b]})
    assert r.json() == {"restored": 1}
    assert listed(client, dataset_id) == [a, b, c]  # back at its place
    assert client.get(f"/api/images/{b}").json()["trashed_at"] is None
    cap = client.get(f"/api/images/{b}/caption").json()
    assert cap["revision"] == 2 and cap["caption"]["high_level_description"] == "Second."
    assert len(client.get(f"/api/images/{b}/caption/revisions").json()) == 2
    assert client.get(f"/api/datasets/{dataset_id}/trash").json() == []


def test_restore_refuses_images_not_in_the_trash(client: TestClient, dataset_id: int) -> None:
    (a,) = images(client, dataset_id, 1)
    r = client.post(f"/api/datasets/{dataset_id}/trash/restore", json={"image_ids": [a, 999]})
    assert r.status_code == 422
    assert r.json()["detail"] == f"Images {a}, 999 are not in this dataset's trash."
    assert (
        client.post(f"/api/datasets/{dataset_id}/trash/restore", json={"image_ids": []}).status_code
        == 422
    )


def test_empty_on_request_deletes_for_good_and_frees_the_bytes(
    client: TestClient, dataset_id: int
) -> None:
    a, b = images(client, dataset_id, 2)
    store = client.app.state.store  # type: ignore[attr-defined]
    sha = client.get(f"/api/images/{a}").json()["sha256"]
    client.delete(f"/api/images/{a}")
    client.delete(f"/api/images/{b}")
    r = client.post(f"/api/datasets/{dataset_id}/trash/empty", json={"image_ids": [b]})
    assert r.json() == {"deleted": 1}
    assert [t["id"] for t in client.get(f"/api/datasets/{dataset_id}/trash").json()] == [a]
    assert store.has_blob(sha)
    assert client.post(f"/api/datasets/{dataset_id}/trash/empty").json() == {"deleted": 1}
    assert client.get(f"/api/images/{a}").status_code == 404
    assert not store.has_blob(sha)


def test_trash_outlives_garbage_collection_and_empties_after_30_days(
    client: TestClient, dataset_id: int
) -> None:
    a, b = images(client, dataset_id, 2)
    store = client.app.state.store  # type: ignore[attr-defined]
    shas = {i: client.get(f"/api/images/{i}").json()["sha256"] for i in (a, b)}
    with Session(engine(client)) as session:
        old, recent = session.get(Image, a), session.get(Image, b)
        assert old is not None and recent is not None
        trash.move_to_trash(session, images=[old], now=utcnow() - timedelta(days=31))
        trash.move_to_trash(session, images=[recent], now=utcnow() - timedelta(days=29))
        # Old blobs, as after a long while: collection would take them were they not referenced.
        for sha in shas.values():
            os.utime(store.blob_path(sha), (0, 0))
        catalog.collect_garbage(session, store=store)  # as at start-up
    assert [t["id"] for t in client.get(f"/api/datasets/{dataset_id}/trash").json()] == [b]
    assert client.get(f"/api/images/{a}").status_code == 404
    assert not store.has_blob(shas[a]) and store.has_blob(shas[b])


def test_trashed_images_are_out_of_flags_drafting_and_dataset_edits(
    client: TestClient, dataset_id: int
) -> None:
    a, b = images(client, dataset_id, 2)
    client.put(f"/api/images/{a}/caption", json={"revision": 0, "caption": CAPTION})
    client.put(f"/api/images/{b}/caption", json={"revision": 0, "caption": CAPTION})
    client.delete(f"/api/images/{b}")
    r = client.post(
        f"/api/datasets/{dataset_id}/replace", json={"find": "scholar", "replace": "monk"}
    )
    assert [i["image_id"] for i in r.json()["preview"]] == [a]
    with Session(engine(client)) as session:
        from app import datasets as ds
        from app.drafting import jobs

        dataset = ds.get_dataset(session, dataset_id)
        job = jobs.create_job(
            session, dataset=dataset, engine="openai", model="m", batch_size=1, scope="all"
        )
        assert [item.image_id for item, _ in jobs.items(session, job)] == [a]


def test_grid_button_trash_list_and_restore_in_the_page(
    client: TestClient, dataset_id: int
) -> None:
    a, b = images(client, dataset_id, 2)
    page = BeautifulSoup(client.get(f"/datasets/{dataset_id}").text, "html.parser")
    tile = page.select_one(f"li.tile[data-image-id='{b}']")
    assert tile is not None
    button = tile.select_one("form.tile-trash button")
    assert button is not None and button.text == "Move to trash"
    assert "The trash is empty" in page.select_one("#trash").text  # type: ignore[union-attr]
    r = client.post(f"/images/{b}/trash", data={"back": f"/datasets/{dataset_id}"}, headers=HX)
    assert r.status_code == 204 and r.headers["HX-Trigger"] == "trashChanged"
    page = BeautifulSoup(client.get(f"/datasets/{dataset_id}").text, "html.parser")
    assert [t["data-image-id"] for t in page.select("li.tile")] == [str(a)]
    item = page.select_one("#trash [data-trashed-id]")
    assert item is not None and item["data-trashed-id"] == str(b)
    assert "deleted for good on" in item.text
    # Without JavaScript the forms still work and come back to the page.
    r = client.post(
        f"/datasets/{dataset_id}/trash/restore", data={"image_id": b}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == f"/datasets/{dataset_id}#trash"
    assert listed(client, dataset_id) == [a, b]
    bad = client.post(f"/datasets/{dataset_id}/trash/restore", data={"image_id": a}, headers=HX)
    assert bad.status_code == 422
    assert (
        "not in this dataset's trash"
        in json.loads(bad.headers["HX-Trigger"])["atelier:error"]["message"]
    )


def test_keep_this_one_moves_the_other_to_trash_with_an_undo(
    client: TestClient, dataset_id: int, tmp_path: Path
) -> None:
    original = f.jpeg(tmp_path / "a.jpg", 11)
    near = f.near_copy(original, tmp_path / "b.jpg")
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in (original, near)]
    client.post(f"/api/datasets/{dataset_id}/images", files=files)
    pair = client.get(f"/api/datasets/{dataset_id}/near-duplicates").json()[0]
    page = BeautifulSoup(client.get(f"/datasets/{dataset_id}/duplicates").text, "html.parser")
    labels = [b.text for b in page.select("#pairs button")]
    assert labels == [
        "Keep this one, move the other to trash",
        "Keep this one, move the other to trash",
        "Keep both",
    ]
    r = client.post(
        f"/near-duplicates/{pair['id']}/resolve",
        data={"keep": "a", "dataset_id": dataset_id},
        headers=HX,
    )
    page = BeautifulSoup(r.text, "html.parser")
    notice = page.select_one("[data-moved]")
    assert notice is not None and "b.jpg is in the dataset's trash" in notice.text
    assert client.get(f"/api/datasets/{dataset_id}/near-duplicates").json() == []
    assert listed(client, dataset_id) == [pair["image_a"]["id"]]
    # Undo: the image comes back, and so does the pair to resolve.
    restore = notice.select_one("form")
    assert restore is not None
    r = client.post(
        restore["action"],  # type: ignore[arg-type]
        data={i["name"]: i["value"] for i in restore.select("input")},  # type: ignore[misc]
        follow_redirects=False,
    )
    assert r.headers["location"] == f"/datasets/{dataset_id}/duplicates"
    assert len(client.get(f"/api/datasets/{dataset_id}/near-duplicates").json()) == 1


def test_trashed_images_are_neither_linted_nor_exported(
    client: TestClient, dataset_id: int, tmp_path: Path
) -> None:
    a, b = images(client, dataset_id, 2)
    for iid in (a, b):
        client.put(f"/api/images/{iid}/caption", json={"revision": 0, "caption": CAPTION})
    client.delete(f"/api/images/{b}")
    lint = client.get(f"/api/datasets/{dataset_id}/lint").text
    assert "1.jpg" not in lint and "0.jpg" in lint
    out = tmp_path / "out"
    r = client.post(f"/api/datasets/{dataset_id}/export", json={"out_dir": str(out), "force": True})
    assert r.status_code == 200, r.text
    images_out = [p for p in out.rglob("*") if p.suffix in (".png", ".jpg")]
    assert len(images_out) == 1


def test_the_editor_of_a_trashed_image_says_so_and_restores(
    client: TestClient, dataset_id: int
) -> None:
    (a,) = images(client, dataset_id, 1)
    assert (
        BeautifulSoup(client.get(f"/images/{a}").text, "html.parser").select_one("[data-in-trash]")
        is None
    )
    client.delete(f"/api/images/{a}")
    notice = BeautifulSoup(client.get(f"/images/{a}").text, "html.parser").select_one(
        "[data-in-trash]"
    )
    assert notice is not None and "in the dataset's trash" in notice.text
    form = notice.select_one("form")
    assert form is not None
    r = client.post(
        form["action"],  # type: ignore[arg-type]
        data={i["name"]: i["value"] for i in form.select("input")},  # type: ignore[misc]
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/images/{a}"
    assert listed(client, dataset_id) == [a]


def test_a_restore_naming_very_many_images_is_one_short_sentence(
    client: TestClient, dataset_id: int
) -> None:
    (a,) = images(client, dataset_id, 1)
    client.delete(f"/api/images/{a}")
    many = [a, *range(10_000_000, 10_009_999)]
    r = client.post(f"/api/datasets/{dataset_id}/trash/restore", json={"image_ids": many})
    assert r.status_code == 422
    assert r.json()["detail"] == (
        "Images 10000000, 10000001, 10000002, 10000003, 10000004 and 9994 more are not in "
        "this dataset's trash."
    )
    assert [t["id"] for t in client.get(f"/api/datasets/{dataset_id}/trash").json()] == [a]


def test_a_running_server_empties_what_stayed_past_30_days(
    client: TestClient, dataset_id: int
) -> None:
    a, b = images(client, dataset_id, 2)
    with Session(engine(client)) as session:
        old = session.get(Image, a)
        assert old is not None
        trash.move_to_trash(session, images=[old], now=utcnow() - timedelta(days=30, minutes=1))
    client.delete(f"/api/images/{b}")
    page = BeautifulSoup(client.get(f"/datasets/{dataset_id}").text, "html.parser")
    assert [li["data-trashed-id"] for li in page.select("#trash [data-trashed-id]")] == [str(b)]
    assert client.get(f"/api/images/{a}").status_code == 404


def test_uploading_a_trashed_image_again_points_to_the_trash(
    client: TestClient, dataset_id: int
) -> None:
    (image,) = images(client, dataset_id, 1)
    assert client.delete(f"/api/images/{image}").status_code == 204
    files = [("files", ("again.jpg", f.jpeg_bytes(1), "image/jpeg"))]
    r = client.post(f"/api/datasets/{dataset_id}/images", files=files).json()
    assert r["duplicates"][0]["duplicate_of"] == image
    assert "trash: restore it from there" in r["duplicates"][0]["reason"]
