"""Deleting a dataset in real Chromium: it is listed on the home page and comes back whole."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests import imagefiles as f

pytestmark = pytest.mark.browser


def test_delete_then_restore_from_the_home_page(page, live_server: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ds = httpx.post(f"{live_server}/api/datasets", json={"name": "Tenebrists"}).json()["id"]
    path = f.jpeg(tmp_path / "a.jpg", 3)
    files = [("files", (path.name, path.read_bytes(), "image/jpeg"))]
    httpx.post(f"{live_server}/api/datasets/{ds}/images", files=files, timeout=60)
    page.goto(f"{live_server}/datasets/{ds}/delete")
    assert "30 days" in page.locator("button.danger").inner_text()
    page.locator("button.danger").click()
    row = page.locator(f"[data-deleted-dataset='{ds}']")
    row.wait_for(timeout=15_000)
    assert "Tenebrists" in row.inner_text()
    assert page.locator("table.datasets").count() == 0
    row.locator("a", has_text="Delete for good").click()
    assert "cannot be undone" in page.locator("main").inner_text()
    page.go_back()
    page.locator(f"[data-deleted-dataset='{ds}'] button", has_text="Restore").click()
    page.wait_for_url(f"{live_server}/datasets/{ds}")
    assert page.locator("li.tile").count() == 1
    assert page.locator("li.tile img").evaluate("i => i.complete && i.naturalWidth > 0")
