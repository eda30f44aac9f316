"""The trainer's centre crop shaded over the painting in the editor, in real Chromium."""

from __future__ import annotations

import httpx
import pytest

from tests import imagefiles as f

pytestmark = pytest.mark.browser


def panorama(url: str) -> int:
    """A 3000x1000 image in a 1024 px dataset: at 512 px the trainer cuts 5 of 299 rows off
    the top and 6 off the bottom (bucket 896x288, resized to 897x299)."""
    ds = httpx.post(f"{url}/api/datasets", json={"name": "Panoramas"}).json()["id"]
    files = [("files", ("pano.jpg", f.jpeg_bytes(7, (3000, 1000)), "image/jpeg"))]
    r = httpx.post(f"{url}/api/datasets/{ds}/images", files=files, timeout=60)
    return r.json()["imported"][0]["image_id"]


def open_editor(page, url: str, iid: int) -> None:  # type: ignore[no-untyped-def]
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{url}/images/{iid}")
    # Measured only once the painting has its size: it is fitted to the column when it loads.
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-box-stage] img');"
        " return i.complete && i.naturalWidth > 0; }"
    )


def shares(page) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    """Each crop part's box as shares of the stage: [x, y, width, height]."""
    return page.evaluate(
        """() => {
          const s = document.querySelector('[data-box-stage]').getBoundingClientRect();
          const out = {};
          for (const el of document.querySelectorAll('[data-crop-part]')) {
            const r = el.getBoundingClientRect();
            out[el.dataset.cropPart] = [(r.x - s.x) / s.width, (r.y - s.y) / s.height,
                                        r.width / s.width, r.height / s.height];
          }
          return out;
        }"""
    )


def test_the_crop_at_a_chosen_resolution_is_shaded_and_boxes_still_draw(  # type: ignore[no-untyped-def]
    page, live_server: str
) -> None:
    iid = panorama(live_server)
    open_editor(page, live_server, iid)
    select = page.locator("[data-crop-resolution]")
    options = select.locator("option").all_inner_texts()
    assert options == [
        "off",
        "512 px: 896×288, cuts 0.1% right, 1.7% top, 2.0% bottom",
        "768 px: 1344×432, cuts 1.8% top, 1.8% bottom",
        "1024 px: 1760×592, cuts 0.5% left, 0.5% right",
    ]
    layer = page.locator("[data-crop-layer]")
    assert layer.count() == 1 and not layer.is_visible()

    select.select_option("512")
    assert layer.is_visible()
    parts = shares(page)
    assert parts["top"][3] == pytest.approx(5 / 299, abs=0.003)
    assert parts["bottom"][1] == pytest.approx(293 / 299, abs=0.003)
    assert parts["bottom"][3] == pytest.approx(6 / 299, abs=0.003)
    assert parts["kept"][1] == pytest.approx(5 / 299, abs=0.003)
    assert parts["kept"][2] == pytest.approx(896 / 897, abs=0.003)

    # The shade lies over the boxes but never takes the mouse: drawing still makes a box.
    box = page.locator("[data-box-svg]").bounding_box()
    page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + 0.3 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.7 * box["height"], steps=6)
    page.mouse.up()
    page.wait_for_function("document.querySelectorAll('[data-element]').length === 1")

    # 1024: 8 columns of 1776 off each side, nothing off the top.
    select.select_option("1024")
    parts = shares(page)
    assert parts["left"][2] == pytest.approx(8 / 1776, abs=0.002)
    assert parts["top"][3] == pytest.approx(0, abs=0.001)


def test_the_chosen_crop_survives_an_htmx_swap_of_the_editor(  # type: ignore[no-untyped-def]
    page, live_server: str
) -> None:
    iid = panorama(live_server)
    open_editor(page, live_server, iid)
    page.locator("[data-crop-resolution]").select_option("768")
    old = page.locator("[data-editor]").element_handle()
    # "palettes from pixels" replaces the whole editor with the server's new one.
    page.click("[data-palettes-from-pixels]")
    page.wait_for_function("(old) => !old.isConnected", arg=old)
    page.wait_for_selector("[data-crop-layer]", state="visible")
    assert page.locator("[data-crop-layer]").count() == 1
    assert page.locator("[data-crop-resolution]").input_value() == "768"
    assert shares(page)["top"][3] == pytest.approx(8 / 448, abs=0.003)
    page.locator("[data-crop-resolution]").select_option("")
    assert not page.locator("[data-crop-layer]").is_visible()
    # Opened again, the page remembers "off".
    page.reload()
    assert page.locator("[data-crop-resolution]").input_value() == ""
    assert not page.locator("[data-crop-layer]").is_visible()
