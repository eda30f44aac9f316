"""Undo where something was just moved or marked: after trashing from the grid, after a bulk
approve, and for every pair resolved on the near-duplicates page."""

from __future__ import annotations

from pathlib import Path

from bs4 import BeautifulSoup
from fastapi.testclient import TestClient

from tests import imagefiles as f
from tests.web.test_api_captions import CAPTION
from tests.web.test_editor_pages import HX, images, soup


def submit(client: TestClient, form) -> None:  # type: ignore[no-untyped-def]
    data: dict[str, list[str]] = {}
    for i in form.select("input[type=hidden]"):
        data.setdefault(i["name"], []).append(i["value"])
    r = client.post(form["action"], data=data, follow_redirects=False)
    assert r.status_code == 303, r.text


def status(client: TestClient, iid: int) -> str:
    return client.get(f"/api/images/{iid}/caption").json()["status"]


def test_trashing_a_tile_says_so_on_the_grid_with_an_undo(
    client: TestClient, dataset_id: int
) -> None:
    a, b = images(client, dataset_id, 2)
    grid = f"/datasets/{dataset_id}"
    r = client.post(f"/images/{a}/trash", data={"back": grid}, headers=HX)
    assert r.headers["HX-Trigger"] == "trashChanged"
    # The grid's refresh on trashChanged carries the sentence and its undo.
    page = soup(client.get(grid, headers=HX | {"HX-Target": "grid"}).text)
    notice = page.select_one("[data-bulk-notice]")
    assert notice is not None and "moved to the trash" in notice.text
    submit(client, notice.select_one("form[data-bulk-undo]"))
    tiles = soup(client.get(grid).text).select("[data-grid] .tile")
    assert [t["data-image-id"] for t in tiles] == [str(a), str(b)]


def test_a_bulk_approve_can_be_undone_from_its_notice(client: TestClient, dataset_id: int) -> None:
    a, b = images(client, dataset_id, 2)
    client.put(f"/api/images/{a}/caption", json={"revision": 0, "caption": CAPTION})
    client.put(f"/api/images/{b}/caption", json={"revision": 0, "caption": CAPTION})
    client.post(f"/api/images/{b}/status", json={"status": "needs_review"})
    data = {"action": "approve", "image_id": [a, b], "back": f"/datasets/{dataset_id}"}
    client.post(f"/datasets/{dataset_id}/bulk", data=data, follow_redirects=False)
    assert status(client, a) == status(client, b) == "approved"
    notice = soup(client.get(f"/datasets/{dataset_id}").text).select_one("[data-bulk-notice]")
    assert notice is not None and "2 images approved" in notice.text
    submit(client, notice.select_one("form[data-bulk-undo]"))
    assert (status(client, a), status(client, b)) == ("edited", "needs_review")
    after = soup(client.get(f"/datasets/{dataset_id}").text).select_one("[data-bulk-notice]")
    assert after is not None and "Undone: 2 images" in after.text


def test_each_pair_resolved_keeps_its_undo_on_the_duplicates_page(
    client: TestClient, dataset_id: int, tmp_path: Path
) -> None:
    files = []
    for seed in (11, 12):
        original = f.jpeg(tmp_path / f"o{seed}.jpg", seed)
        near = f.near_copy(original, tmp_path / f"n{seed}.jpg")
        files += [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in (original, near)]
    client.post(f"/api/datasets/{dataset_id}/images", files=files)
    pairs = client.get(f"/api/datasets/{dataset_id}/near-duplicates").json()
    assert len(pairs) == 2
    page = BeautifulSoup(client.get(f"/datasets/{dataset_id}/duplicates").text, "html.parser")
    for pair in pairs:
        form = page.select_one(f"[data-pair='{pair['id']}'] form")
        assert form is not None
        data: dict[str, list[str]] = {}
        for i in form.select("input[type=hidden]"):
            data.setdefault(i["name"], []).append(i["value"])
        r = client.post(form["hx-post"], data=data, headers=HX)  # type: ignore[arg-type]
        page = BeautifulSoup(r.text, "html.parser")
    moved = [n["data-moved"] for n in page.select("[data-moved]")]
    assert len(moved) == 2  # the first pair's undo is still there
