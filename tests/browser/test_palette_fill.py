"""In Chromium: lint's palette warning fills every empty palette from the pixels in one click,
and one more click undoes it."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import httpx
import pytest

from tests import imagefiles as f
from tests.export.test_export import CAPTION

pytestmark = pytest.mark.browser

# Screenshots land here to be looked at (ATELIER_SHOTS), else beside the test's files.
SHOTS = os.environ.get("ATELIER_SHOTS")


def shots(tmp_path: Path) -> Path:
    folder = Path(SHOTS) if SHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def image_palette(url: str, image_id: int) -> list[str]:
    cap = httpx.get(f"{url}/api/images/{image_id}/caption").json()["caption"]
    return cap["style_description"].get("color_palette", [])


@pytest.mark.parametrize("size", [(1440, 900), (1280, 720)])
def test_fill_empty_palettes_from_the_lint_warning(  # type: ignore[no-untyped-def]
    page, live_server: str, tmp_path: Path, size: tuple[int, int]
) -> None:
    page.set_viewport_size({"width": size[0], "height": size[1]})
    dataset_id = httpx.post(
        f"{live_server}/api/datasets", json={"name": "Palettes", "trigger_word": "pl"}
    ).json()["id"]
    files = [
        ("files", (f"{n}.png", f.png(tmp_path / f"{n}.png", n, (640, 480)).read_bytes()))
        for n in (1, 2, 3)
    ]
    imported = httpx.post(
        f"{live_server}/api/datasets/{dataset_id}/images", files=files, timeout=60
    ).json()["imported"]
    ids = [o["image_id"] for o in imported]
    for iid in ids:
        cap = copy.deepcopy(CAPTION)
        cap["style_description"]["color_palette"] = []
        r = httpx.put(
            f"{live_server}/api/images/{iid}/caption", json={"revision": 0, "caption": cap}
        )
        assert r.status_code == 200, r.text

    page.goto(f"{live_server}/datasets/{dataset_id}/export")
    warning = page.locator("[data-lint] li.warning").filter(has_text="no_palette")
    assert "3 of 3 captions have no palette" in warning.inner_text()
    warning.scroll_into_view_if_needed()
    where = shots(tmp_path)
    page.screenshot(path=str(where / f"export_lint_palettes_{size[0]}x{size[1]}.png"))
    warning.get_by_role("button", name="Fill the empty palettes from the pixels").click()
    done = page.locator("[data-palette-fill] [role=status]")
    done.wait_for(timeout=60_000)
    assert "Filled the palettes of 3 captions" in done.inner_text()
    assert page.url.endswith(f"/datasets/{dataset_id}/export")  # swapped in place
    assert all(image_palette(live_server, i) for i in ids)
    page.screenshot(path=str(where / f"export_palettes_filled_{size[0]}x{size[1]}.png"))

    page.get_by_role("button", name="Undo this").click()
    page.locator("#batch-undone").wait_for()
    assert "Undone: 3 captions back as they were" in page.locator("#batch-undone").inner_text()
    assert all(image_palette(live_server, i) == [] for i in ids)
    page.screenshot(path=str(where / f"export_palettes_undone_{size[0]}x{size[1]}.png"))
