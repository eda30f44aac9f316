"""Smaller things seen in a first day with the editor, in real Chromium: the page keeps still
under a first box, the selected box's edge resizes it beside a neighbour, `a` and `r` on an
image without a caption say why, and a tile's file name opens the editor."""

from __future__ import annotations

import httpx
import pytest

from tests.browser.test_editor import caption, drag, setup_images, stage_point, wait_saved

pytestmark = pytest.mark.browser


def test_drawing_the_first_box_keeps_the_page_still(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    (iid,) = setup_images(live_server, size=(1000, 1400))
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{live_server}/images/{iid}")
    page.evaluate("window.scrollTo(0, 120)")
    before = page.evaluate("window.scrollY")
    drag(page, stage_point(page, 0.2, 0.2), stage_point(page, 0.5, 0.4))
    assert page.locator("[data-element]").count() == 1
    page.wait_for_timeout(300)
    assert page.evaluate("window.scrollY") == before


def test_the_selected_boxs_edge_resizes_it_where_it_touches_a_neighbour(
    page, live_server: str
) -> None:  # type: ignore[no-untyped-def]
    (iid,) = setup_images(live_server)
    elements = [
        {"type": "obj", "bbox": [100, 100, 900, 500], "desc": "left", "color_palette": []},
        {"type": "obj", "bbox": [300, 500, 600, 700], "desc": "right", "color_palette": []},
    ]
    body = {"revision": 0, "caption": {"compositional_deconstruction": {"elements": elements}}}
    assert httpx.put(f"{live_server}/api/images/{iid}/caption", json=body).status_code == 200
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/images/{iid}")
    page.mouse.click(*stage_point(page, 0.3, 0.5))  # selects the left box
    # Its right edge, a little inside the neighbour and away from the edge's middle handle.
    drag(page, stage_point(page, 0.502, 0.4), stage_point(page, 0.45, 0.4))
    wait_saved(page)
    got = caption(live_server, iid)["caption"]["compositional_deconstruction"]["elements"]
    assert got[1]["bbox"] == [300, 500, 600, 700]  # the neighbour stays
    assert got[0]["bbox"][:3] == [100, 100, 900] and 440 <= got[0]["bbox"][3] <= 460


def test_approving_an_image_without_a_caption_says_why(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    (iid,) = setup_images(live_server)
    page.goto(f"{live_server}/images/{iid}")
    page.keyboard.press("a")
    toast = page.locator("[data-toast]")
    toast.wait_for(state="visible", timeout=5_000)
    assert "no caption yet" in toast.inner_text()


def test_a_tiles_file_name_opens_the_editor(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    (iid,) = setup_images(live_server)
    page.goto(f"{live_server}/images/{iid}")
    page.locator(".topbar nav a").nth(1).click()  # the dataset's grid
    page.wait_for_url("**/datasets/*")
    page.locator(f".tile[data-image-id='{iid}'] .name").click()
    page.wait_for_url(f"**/images/{iid}", timeout=5_000)


def test_a_label_holding_code_reads_as_one_sentence(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{live_server}/training")
    label = page.locator("label:has(code)").first
    code = label.locator("code").first
    # The code sits on the sentence's first line, not on a line of its own below it.
    assert abs(code.bounding_box()["y"] - label.bounding_box()["y"]) < 6
