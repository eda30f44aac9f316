"""The trash in real Chromium: from the grid and the near-duplicates page, and back."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests import imagefiles as f

pytestmark = pytest.mark.browser


def upload(url: str, paths: list[Path]) -> tuple[int, list[int]]:
    ds = httpx.post(f"{url}/api/datasets", json={"name": "Tenebrists"}).json()["id"]
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
    r = httpx.post(f"{url}/api/datasets/{ds}/images", files=files, timeout=60)
    return ds, [o["image_id"] for o in r.json()["imported"]]


def test_grid_moves_to_trash_and_the_trash_restores(page, live_server: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ds, (a, b) = upload(live_server, [f.jpeg(tmp_path / f"{i}.jpg", i + 1) for i in range(2)])
    page.goto(f"{live_server}/datasets/{ds}")
    page.locator(f"li.tile[data-image-id='{b}'] button", has_text="Move to trash").click()
    trashed = page.locator(f"#trash [data-trashed-id='{b}']")
    trashed.wait_for(timeout=15_000)
    page.locator(f"li.tile[data-image-id='{b}']").wait_for(state="detached")
    assert page.locator("li.tile").count() == 1
    assert "deleted for good on" in trashed.inner_text()
    trashed.locator("button", has_text="Restore").click()
    page.locator(f"li.tile[data-image-id='{b}']").wait_for(timeout=15_000)
    assert "The trash is empty" in page.locator("#trash").inner_text()
    ids = [i["id"] for i in httpx.get(f"{live_server}/api/datasets/{ds}/images").json()]
    assert ids == [a, b]


def test_keep_this_one_then_undo(page, live_server: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    original = f.jpeg(tmp_path / "a.jpg", 11)
    ds, (a, b) = upload(live_server, [original, f.near_copy(original, tmp_path / "b.jpg")])
    page.goto(f"{live_server}/datasets/{ds}/duplicates")
    keep = page.locator("button", has_text="Keep this one, move the other to trash")
    assert keep.count() == 2
    keep.first.click()
    notice = page.locator("[data-moved]")
    notice.wait_for(timeout=15_000)
    assert "b.jpg is in the dataset's trash" in notice.inner_text()
    assert page.locator("article.pair").count() == 0
    notice.locator("button", has_text="Undo: restore it").click()
    page.locator("article.pair").wait_for(timeout=15_000)
    ids = [i["id"] for i in httpx.get(f"{live_server}/api/datasets/{ds}/images").json()]
    assert ids == [a, b]
