"""The palette's "+" in real Chromium: a colour picker with an eyedropper over the painting;
nothing is added or saved until "Add"."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image as PILImage

from tests.browser.test_editor import caption, stage_point, wait_saved

pytestmark = pytest.mark.browser

RED, BLUE = (200, 30, 30), (30, 60, 200)


def two_colour_image(url: str) -> int:
    """A PNG red on its left half and blue on its right, in a new dataset; its id."""
    picture = PILImage.new("RGB", (800, 600), BLUE)
    picture.paste(RED, (0, 0, 400, 600))
    data = io.BytesIO()
    picture.save(data, "PNG")
    ds = httpx.post(f"{url}/api/datasets", json={"name": "Two colours"}).json()["id"]
    files = [("files", ("halves.png", data.getvalue(), "image/png"))]
    r = httpx.post(f"{url}/api/datasets/{ds}/images", files=files, timeout=60)
    return r.json()["imported"][0]["image_id"]


def test_plus_opens_a_picker_and_the_eyedropper_takes_the_paintings_colour(
    page, live_server: str
) -> None:  # type: ignore[no-untyped-def]
    iid = two_colour_image(live_server)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/images/{iid}")
    palette = page.locator(".style-block [data-palette]")
    palette.locator(".swatch-add").click()
    picker = palette.locator("[data-colour-picker]")
    assert picker.is_visible()
    page.wait_for_timeout(1200)  # longer than the autosave's delay
    # Opening the picker adds nothing and saves nothing.
    assert palette.locator("input[name=palette]").input_value() == ""
    assert caption(live_server, iid)["revision"] == 0

    picker.locator("[data-eyedropper]").click()
    page.mouse.click(*stage_point(page, 0.25, 0.5))
    assert picker.locator("[data-pick-hex]").input_value() == "#C81E1E"
    assert page.locator("[data-element]").count() == 0  # the click drew no box
    picker.locator("[data-pick-add]").click()
    assert palette.locator("[data-colour-picker]").count() == 0
    wait_saved(page)
    got = caption(live_server, iid)["caption"]["style_description"]["color_palette"]
    assert got == ["#C81E1E"]

    # Esc closes a picker without adding anything.
    palette.locator(".swatch-add").click()
    page.keyboard.press("Escape")
    assert palette.locator("[data-colour-picker]").count() == 0
    assert palette.locator("input[name=palette]").input_value() == "#C81E1E"
