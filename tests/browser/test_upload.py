"""Drag-and-drop upload in real Chromium: progress bar, per-file report, grid refresh."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from tests import imagefiles as f

pytestmark = pytest.mark.browser


def make_dataset(url: str) -> int:
    return httpx.post(f"{url}/api/datasets", json={"name": "Chiaroscuro"}).json()["id"]


def test_choose_files_uploads_with_progress(page, live_server: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ds = make_dataset(live_server)
    files = [f.jpeg(tmp_path / f"{i:02d}.jpg", i, (1300, 1100)) for i in range(20)]
    (tmp_path / "00.json").write_text('{"high_level_description": "a"}')
    bad = tmp_path / "fake.png"
    bad.write_text("<html>nope</html>")
    page.goto(f"{live_server}/datasets/{ds}")
    uncaptioned = page.locator("[data-uncaptioned]")
    assert uncaptioned.inner_text() == "· 0 without a caption"
    page.set_input_files(
        "[data-file-input]", [*map(str, files), str(tmp_path / "00.json"), str(bad)]
    )
    status = page.locator("[data-upload-status]")
    status.filter(has_text="Done:").wait_for(timeout=60_000)
    assert status.inner_text() == "Done: 20 imported, 0 duplicate, 1 refused."
    assert page.locator("[data-progress]").evaluate("p => p.value") == 100
    report = page.locator("[data-upload-report] li")
    assert report.filter(has_text="00.jpg: imported with its .json caption").count() == 1
    assert (
        report.filter(has_text="fake.png: refused, it is an HTML page, not an image").count() == 1
    )
    # Refused in the second batch, listed first all the same (and kept: see the end).
    assert report.first.inner_text().startswith("fake.png: refused")
    # The grid and the drafting card's count refreshed themselves through the htmx event,
    # thumbnails loaded.
    uncaptioned.filter(has_text="19 without").wait_for()
    page.locator("ul.grid li.tile").nth(19).wait_for()
    assert page.locator("ul.grid li.tile").count() == 20
    page.wait_for_function(
        "[...document.querySelectorAll('ul.grid img')].slice(0, 4)"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    page.locator("[data-upload-history]").click()
    page.wait_for_url("**/imports?upload=*")
    kept = page.locator("[data-import] .report li")
    assert kept.first.inner_text().startswith("fake.png: refused")
    assert kept.count() == 21


def test_drop_files_on_zone(page, live_server: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ds = make_dataset(live_server)
    payload = [
        {
            "name": "dropped.jpg",
            "b64": base64.b64encode(f.jpeg_bytes(3)).decode(),
            "type": "image/jpeg",
        },
        {
            "name": "dropped.txt",
            "b64": base64.b64encode(b"a caption").decode(),
            "type": "text/plain",
        },
    ]
    page.goto(f"{live_server}/datasets/{ds}")
    page.evaluate(
        """(files) => {
            const dt = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.b64), c => c.charCodeAt(0));
                dt.items.add(new File([bytes], f.name, {type: f.type}));
            }
            const zone = document.querySelector('[data-dropzone]');
            const opts = {dataTransfer: dt, bubbles: true, cancelable: true};
            zone.dispatchEvent(new DragEvent("dragover", opts));
            zone.dispatchEvent(new DragEvent("drop", opts));
        }""",
        payload,
    )
    page.locator("[data-upload-status]").filter(has_text="Done:").wait_for(timeout=30_000)
    assert (
        "dropped.jpg: imported with its .txt caption"
        in page.locator("[data-upload-report]").inner_text()
    )
    images = httpx.get(f"{live_server}/api/datasets/{ds}/images").json()
    assert [(i["filename"], i["has_caption_file"]) for i in images] == [("dropped.jpg", True)]


def test_filter_links_swap_grid(page, live_server: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ds = make_dataset(live_server)
    httpx.post(
        f"{live_server}/api/datasets/{ds}/images",
        files=[
            ("files", ("big.jpg", f.jpeg_bytes(1, (1400, 1100)))),
            ("files", ("small.jpg", f.jpeg_bytes(2, (700, 500)))),
        ],
    )
    page.goto(f"{live_server}/datasets/{ds}")
    page.click("nav.filters a:has-text('low resolution')")
    page.wait_for_url("**flag=low_resolution**")
    page.wait_for_function("document.querySelectorAll('ul.grid li.tile').length === 1")
    assert page.locator("ul.grid li.tile .name").inner_text() == "small.jpg"
