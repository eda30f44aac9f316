"""The caption editor in real Chromium: boxes drawn by mouse, fields, keyboard, conflicts."""

from __future__ import annotations

import httpx
import pytest

from tests import imagefiles as f

pytestmark = pytest.mark.browser


def setup_images(url: str, n: int = 1, size: tuple[int, int] = (1200, 1000)) -> list[int]:
    ds = httpx.post(f"{url}/api/datasets", json={"name": "Tenebrists"}).json()["id"]
    files = [("files", (f"{i}.jpg", f.jpeg_bytes(i, size), "image/jpeg")) for i in range(n)]
    r = httpx.post(f"{url}/api/datasets/{ds}/images", files=files, timeout=60)
    return [o["image_id"] for o in r.json()["imported"]]


def caption(url: str, image_id: int) -> dict:
    return httpx.get(f"{url}/api/images/{image_id}/caption").json()


def wait_saved(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "() => { const s = document.querySelector('#save-state');"
        " const ed = document.querySelector('[data-editor]').editor;"
        " return s && s.dataset.state === 'saved' && !ed.dirty; }",
        timeout=15_000,
    )


def stage_point(page, fx: float, fy: float) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    box = page.locator("[data-box-svg]").bounding_box()
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


def drag(page, a: tuple[float, float], b: tuple[float, float]) -> None:  # type: ignore[no-untyped-def]
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, steps=4)
    page.mouse.move(*b, steps=4)
    page.mouse.up()


def test_draw_resize_type_reload_and_read_back(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    (iid,) = setup_images(live_server)
    page.set_viewport_size({"width": 1500, "height": 1000})
    page.goto(f"{live_server}/images/{iid}")
    svg = page.locator("[data-box-svg]").bounding_box()

    drag(page, stage_point(page, 0.2, 0.3), stage_point(page, 0.6, 0.7))
    element = page.locator("[data-element]")
    assert element.count() == 1
    # Drawing a box makes a new element and puts the cursor in its description.
    page.keyboard.type("a bearded scholar")
    element.locator("[data-el-type]").select_option("text")
    element.locator("[data-el-text]").fill("VANITAS\nVANITATUM")

    # Resize from the bottom-right handle.
    end = stage_point(page, 0.75, 0.85)
    drag(page, stage_point(page, 0.6, 0.7), end)
    wait_saved(page)

    page.reload()
    assert page.locator("[data-box-svg] g.box").count() == 1
    assert page.locator("[data-el-desc]").input_value() == "a bearded scholar"
    got = caption(live_server, iid)
    el = got["caption"]["compositional_deconstruction"]["elements"][0]
    assert el["type"] == "text"
    assert el["text"] == "VANITAS\nVANITATUM"
    assert el["desc"] == "a bearded scholar"
    start = stage_point(page, 0.2, 0.3)
    expected = [
        (start[1] - svg["y"]) / svg["height"],
        (start[0] - svg["x"]) / svg["width"],
        (end[1] - svg["y"]) / svg["height"],
        (end[0] - svg["x"]) / svg["width"],
    ]
    for got_v, want in zip(el["bbox"], expected, strict=True):
        assert abs(got_v - want * 1000) <= 1, (el["bbox"], expected)


def test_move_delete_undo_and_keyboard_review(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    first, second = setup_images(live_server, 2)
    page.set_viewport_size({"width": 1500, "height": 1000})
    page.goto(f"{live_server}/images/{first}")
    drag(page, stage_point(page, 0.1, 0.1), stage_point(page, 0.3, 0.3))
    page.keyboard.type("a skull")
    wait_saved(page)
    page.keyboard.press("Escape")  # leave the field

    # Move: drag from inside the box.
    drag(page, stage_point(page, 0.2, 0.2), stage_point(page, 0.5, 0.6))
    wait_saved(page)
    bbox = caption(live_server, first)["caption"]["compositional_deconstruction"]["elements"][0][
        "bbox"
    ]
    assert abs(bbox[0] - 500) <= 2 and abs(bbox[1] - 400) <= 2  # y0 0.1+0.4, x0 0.1+0.3
    assert abs((bbox[2] - bbox[0]) - 200) <= 2  # the size did not change

    # Delete removes the selected element; Ctrl+Z brings it back from the revisions.
    page.keyboard.press("Delete")
    assert page.locator("[data-element]").count() == 0
    wait_saved(page)
    assert caption(live_server, first)["caption"]["compositional_deconstruction"]["elements"] == []
    page.keyboard.press("Control+z")
    page.locator("[data-element]").first.wait_for()
    assert page.locator("[data-el-desc]").input_value() == "a skull"
    els = caption(live_server, first)["caption"]["compositional_deconstruction"]["elements"]
    assert len(els) == 1

    # The help overlay lists the shortcuts.
    page.keyboard.press("?")
    assert page.locator("dialog[data-help]").is_visible()
    page.keyboard.press("Escape")

    # a: approve, then the next image opens; it says why the approved caption may be weak
    # (a skull, but no description and no background).
    page.keyboard.press("a")
    page.wait_for_url(f"**/images/{second}?reviewed={first}&weak={first}")
    assert caption(live_server, first)["status"] == "approved"
    # The next image confirms what `a` did, below the toolbar.
    assert page.locator("[data-reviewed]").inner_text().startswith("0.jpg is marked approved")
    notice = page.locator("[data-weak]").inner_text()
    assert "is approved, but it may be weak" in notice
    assert "an empty high-level description and an empty background" in notice
    page.keyboard.press("k")
    page.wait_for_url(f"**/images/{first}")


@pytest.mark.slow
def test_two_tabs_merge_other_fields_and_ask_only_for_the_same_one(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    (iid,) = setup_images(live_server)
    start = {
        "high_level_description": "A scholar reads.",
        "compositional_deconstruction": {
            "background": "a dark study",
            "elements": [{"type": "obj", "bbox": [100, 100, 500, 500], "desc": "the scholar"}],
        },
    }
    r = httpx.put(f"{live_server}/api/images/{iid}/caption", json={"revision": 0, "caption": start})
    assert r.status_code == 200
    a, b = page, page.context.browser.new_page(bypass_csp=True)
    for tab in (a, b):
        tab.goto(f"{live_server}/images/{iid}")

    # Different fields: tab B's stale save merges by itself, nothing asked, nothing lost.
    a.fill("textarea[name=high_level_description]", "A scholar reads, from tab A.")
    wait_saved(a)
    b.fill("textarea[name=background]", "a study, from tab B")
    b.locator("[data-merged]").wait_for(timeout=15_000)
    wait_saved(b)
    assert "[data-conflict]" not in b.content()
    assert b.locator("textarea[name=high_level_description]").input_value().endswith("tab A.")
    assert b.evaluate("document.activeElement.name") == "background"
    got = caption(live_server, iid)["caption"]
    assert got["high_level_description"] == "A scholar reads, from tab A."
    assert got["compositional_deconstruction"]["background"] == "a study, from tab B"

    # The same field: tab A is asked about it alone, side by side, and its choice is saved.
    a.fill("textarea[name=background]", "a cell, from tab A")
    conflict = a.locator("[data-conflict]")
    conflict.wait_for(timeout=15_000)
    rows = conflict.locator("table.diff tbody tr")
    assert rows.count() == 1
    row = rows.first.inner_text()
    assert "background" in row and "a study, from tab B" in row and "a cell, from tab A" in row
    # A choice is required: the browser will not send the merge without one.
    assert rows.first.locator("input[value=mine]").evaluate("e => e.validity.valueMissing")
    rows.first.locator("input[value=mine]").check()
    conflict.locator("button", has_text="Save the merge").click()
    a.locator("[data-conflict]").wait_for(state="detached")
    got = caption(live_server, iid)["caption"]
    assert got["compositional_deconstruction"]["background"] == "a cell, from tab A"
    assert got["high_level_description"] == "A scholar reads, from tab A."
    assert got["compositional_deconstruction"]["elements"][0]["desc"] == "the scholar"
    assert a.locator("textarea[name=background]").input_value() == "a cell, from tab A"
