"""The editor for a day of review, in real Chromium: inherited style values, statuses, history,
box labels and numbers, raw JSON, copying from the previous image, changes made elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests import imagefiles as f
from tests.browser.conftest import serving
from tests.browser.test_editor import caption, drag, setup_images, stage_point, wait_saved

pytestmark = pytest.mark.browser

BLOCK = {"aesthetics": "Baroque chiaroscuro", "lighting": "raking light", "medium": "painting"}
CAPTION = {
    "high_level_description": "A scholar reads.",
    "style_description": {"aesthetics": "tenebrist", "lighting": "one candle"},
    "compositional_deconstruction": {
        "background": "a dark study",
        "elements": [
            {"type": "obj", "bbox": [100, 200, 300, 400], "desc": "the scholar"},
            {"type": "text", "bbox": [600, 500, 700, 900], "text": "VANITAS", "desc": "a motto"},
        ],
    },
}


def only_dataset(url: str) -> int:
    (dataset,) = httpx.get(f"{url}/api/datasets").json()
    return dataset["id"]


def put(url: str, image_id: int, body: dict) -> dict:
    revision = caption(url, image_id)["revision"]
    r = httpx.put(
        f"{url}/api/images/{image_id}/caption", json={"revision": revision, "caption": body}
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_uncaptioned_image_shows_the_dataset_values_and_a_persons_save_is_edited(
    page, live_server: str
) -> None:  # type: ignore[no-untyped-def]
    (iid,) = setup_images(live_server)
    ds = only_dataset(live_server)
    assert httpx.put(f"{live_server}/api/datasets/{ds}/style", json=BLOCK).status_code == 200
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/images/{iid}")

    # Before any caption: the fields the dataset fills show its values, muted, not blanks.
    assert page.locator("[data-status]").inner_text() == "no caption"
    aesthetics = page.locator("textarea[name=aesthetics]")
    assert aesthetics.input_value() == ""
    assert aesthetics.get_attribute("placeholder") == "Baroque chiaroscuro"
    assert page.locator("textarea[name=lighting]").get_attribute("placeholder") == "raking light"
    medium = page.locator("select[name=medium] option[value='']").inner_text()
    assert medium == "(the dataset's: painting)"

    # A person's first save is "edited", the engine's word "draft" left to the engine.
    page.fill("textarea[name=high_level_description]", "A scholar reads.")
    wait_saved(page)
    got = caption(live_server, iid)
    assert got["status"] == "edited"
    assert got["caption"]["style_description"]["aesthetics"] == "Baroque chiaroscuro"
    page.wait_for_function("document.querySelector('[data-status]').dataset.status === 'edited'")
    assert page.locator("[data-status]").inner_text() == "edited"


def test_history_is_numbered_once_and_box_labels_are_pills_of_one_size(
    page, live_server: str
) -> None:  # type: ignore[no-untyped-def]
    (iid,) = setup_images(live_server)
    put(live_server, iid, CAPTION)
    put(live_server, iid, {**CAPTION, "high_level_description": "A scholar reads, later."})
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/images/{iid}")

    page.locator(".history-card summary").click()
    rows = page.locator("#history-list > li")
    rows.first.wait_for()
    assert rows.count() == 2
    # One number a row: the revision's, with no list marker numbering it again.
    assert rows.first.evaluate("li => getComputedStyle(li).listStyleType") == "none"
    assert [rows.nth(i).locator("[data-rev-num]").inner_text() for i in range(2)] == ["2", "1"]

    # Each label is its number on a filled pill, the same size on screen at any zoom.
    labels = page.locator("[data-box-svg] g.box .label")
    assert labels.count() == 2
    assert [labels.nth(i).locator("text").text_content() for i in range(2)] == ["1", "2"]
    fill = labels.first.locator("rect.pill").evaluate("r => getComputedStyle(r).fill")
    assert fill not in ("none", "rgba(0, 0, 0, 0)")

    def label_height() -> float:
        return labels.first.locator("text").bounding_box()["height"]

    at_fit = label_height()
    assert at_fit >= 14
    for _ in range(4):
        page.click("[data-zoom=in]")
    page.wait_for_timeout(200)
    assert abs(label_height() - at_fit) <= 2


def test_ambiguous_boxes_are_numbered_in_both_readings(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    ds = httpx.post(f"{live_server}/api/datasets", json={"name": "Imported"}).json()["id"]
    sidecar = {
        "compositional_deconstruction": {
            "elements": [
                {"type": "obj", "bbox": [100, 200, 300, 400], "desc": "a"},
                {"type": "obj", "bbox": [500, 500, 600, 700], "desc": "b"},
            ]
        }
    }
    files = [
        ("files", ("a.jpg", f.jpeg_bytes(1, (1000, 800)), "image/jpeg")),
        ("files", ("a.json", json.dumps(sidecar).encode(), "application/json")),
    ]
    r = httpx.post(f"{live_server}/api/datasets/{ds}/images", files=files, timeout=60)
    iid = r.json()["imported"][0]["image_id"]
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/images/{iid}")
    page.locator("[data-ambiguous]").wait_for()
    alt = page.locator("[data-box-svg] g.alt-box")
    assert alt.count() == 2
    assert [alt.nth(i).locator("text").text_content() for i in range(2)] == ["1", "2"]
    assert page.locator("[data-box-svg] g.box .label text").count() == 2


def test_box_in_numbers_both_ways_kinds_in_colours_and_boxes_hidden(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    (iid,) = setup_images(live_server)
    put(live_server, iid, CAPTION)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/images/{iid}")
    coords = page.locator("[data-box-coord]")
    assert all(coords.nth(i).is_disabled() for i in range(4))

    # Selecting an element shows its box as the caption file writes it.
    page.locator("[data-element]").first.locator("[data-el-desc]").click()
    assert [coords.nth(i).input_value() for i in range(4)] == ["100", "200", "300", "400"]

    # Typing a number moves the drawn box and saves it, exactly.
    frame = page.locator("[data-box-svg] g.box").first.locator("rect.frame")
    height_before = float(frame.get_attribute("height") or 0)
    coords.nth(2).fill("500")
    wait_saved(page)
    bbox = caption(live_server, iid)["caption"]["compositional_deconstruction"]["elements"][0]
    assert bbox["bbox"] == [100, 200, 500, 400]
    assert float(frame.get_attribute("height") or 0) == pytest.approx(height_before * 2, rel=0.01)
    # A box the wrong way round is refused where it is typed; nothing changes.
    coords.nth(2).fill("50")
    assert coords.nth(2).get_attribute("aria-invalid") is not None
    page.keyboard.press("Escape")

    # Dragging the box: the numbers follow, equal to what was saved.
    drag(page, stage_point(page, 0.3, 0.3), stage_point(page, 0.4, 0.35))
    wait_saved(page)
    saved = caption(live_server, iid)["caption"]["compositional_deconstruction"]["elements"][0]
    assert [int(coords.nth(i).input_value()) for i in range(4)] == saved["bbox"]

    # Objects and text are drawn in different colours.
    stroke = "g => getComputedStyle(g.querySelector('rect.frame')).stroke"
    page.keyboard.press("Escape")
    obj = page.locator("[data-box-svg] g.box.kind-obj").first.evaluate(stroke)
    text = page.locator("[data-box-svg] g.box.kind-text").first.evaluate(stroke)
    assert obj != text

    # h hides the boxes (and the button says so); h again brings them back.
    page.keyboard.press("h")
    assert page.locator("[data-box-svg] g.box").count() == 0
    assert page.locator("[data-toggle-boxes]").get_attribute("aria-pressed") == "true"
    page.click("[data-toggle-boxes]")
    assert page.locator("[data-box-svg] g.box").count() == 2
    # The help lists the new key.
    page.keyboard.press("?")
    assert "hide / show the boxes" in page.locator("dialog[data-help]").inner_text()


def test_raw_json_is_validated_with_field_errors_and_saved_as_a_revision(
    page, live_server: str
) -> None:  # type: ignore[no-untyped-def]
    (iid,) = setup_images(live_server)
    put(live_server, iid, CAPTION)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/images/{iid}")
    page.locator("[data-raw-card] summary").click()
    raw = page.locator("[data-raw-text]")
    raw.wait_for()
    assert json.loads(raw.input_value()) == caption(live_server, iid)["caption"]

    # Wrong fields: each named, nothing saved, the text kept as typed.
    bad = {**CAPTION, "high_level_description": 5, "style_description": {"medium": "clay"}}
    raw.fill(json.dumps(bad))
    page.click("[data-raw-form] button[type=submit]")
    errors = page.locator("[data-raw-errors]")
    errors.wait_for()
    text = errors.inner_text()
    assert "high-level description" in text and "style · medium" in text
    assert json.loads(page.locator("[data-raw-text]").input_value()) == bad
    assert caption(live_server, iid)["revision"] == 1
    page.fill("[data-raw-text]", "{not json")
    page.click("[data-raw-form] button[type=submit]")
    page.locator("[data-raw-errors]", has_text="This is not JSON").wait_for()

    # Meanwhile another tab saves the background; the pasted JSON, over revision 1, merges.
    other = dict(
        CAPTION, compositional_deconstruction=dict(CAPTION["compositional_deconstruction"])
    )
    other["compositional_deconstruction"]["background"] = "a cell, from elsewhere"
    put(live_server, iid, other)
    pasted = {**CAPTION, "high_level_description": "A scholar reads, pasted."}
    page.fill("[data-raw-text]", json.dumps(pasted, indent=1))
    page.click("[data-raw-form] button[type=submit]")
    page.wait_for_function(
        "document.querySelector('textarea[name=high_level_description]').value"
        " === 'A scholar reads, pasted.'"
    )
    got = caption(live_server, iid)
    assert got["revision"] == 3
    assert got["caption"]["high_level_description"] == "A scholar reads, pasted."
    assert got["caption"]["compositional_deconstruction"]["background"] == "a cell, from elsewhere"
    # The panel stays open on the saved caption.
    assert json.loads(page.locator("[data-raw-text]").input_value()) == got["caption"]


def test_copy_style_and_background_from_the_previous_image(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    first, second = setup_images(live_server, 2)
    put(live_server, first, CAPTION)
    mine = {
        "high_level_description": "A skull on a table.",
        "style_description": {"aesthetics": "bright", "color_palette": ["#112233"]},
        "compositional_deconstruction": {"background": "a garden", "elements": []},
    }
    put(live_server, second, mine)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/images/{second}")
    page.fill("textarea[name=high_level_description]", "A skull on a table, typed.")
    # Unsaved typing is saved first, then the style is copied over it.
    page.click("[data-copy-previous=style]")
    page.wait_for_function(
        "document.querySelector('textarea[name=aesthetics]').value === 'tenebrist'"
    )
    got = caption(live_server, second)["caption"]
    assert got["high_level_description"] == "A skull on a table, typed."
    assert got["style_description"]["aesthetics"] == "tenebrist"
    assert got["style_description"]["lighting"] == "one candle"
    assert got["style_description"]["color_palette"] == ["#112233"]  # this painting's own
    assert got["compositional_deconstruction"]["background"] == "a garden"
    page.click("[data-copy-previous=background]")
    page.wait_for_function(
        "document.querySelector('textarea[name=background]').value === 'a dark study'"
    )
    assert (
        caption(live_server, second)["caption"]["compositional_deconstruction"]["background"]
        == "a dark study"
    )
    # The first image has no previous one: nothing offered.
    page.goto(f"{live_server}/images/{first}")
    assert page.locator("[data-copy-previous]").count() == 0


@pytest.mark.slow
def test_a_save_made_elsewhere_is_announced_while_the_editor_is_open(
    page, live_server: str
) -> None:  # type: ignore[no-untyped-def]
    (iid,) = setup_images(live_server)
    put(live_server, iid, CAPTION)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/images/{iid}")
    notice = page.locator("[data-change-notice]")
    page.wait_for_timeout(3500)  # a poll or more with nothing new: nothing said
    assert notice.is_hidden()

    put(live_server, iid, {**CAPTION, "high_level_description": "Saved elsewhere."})
    notice.wait_for(state="visible", timeout=10_000)
    assert "Revision 2 was saved by another tab or person" in notice.inner_text()
    assert "this page shows revision 1" in notice.inner_text()
    notice.locator("[data-load-newer]").click()
    page.wait_for_function(
        "document.querySelector('textarea[name=high_level_description]').value"
        " === 'Saved elsewhere.'"
    )
    assert page.locator("[data-change-notice]").is_hidden()

    # Dismissed, it stays away for that revision.
    put(live_server, iid, {**CAPTION, "high_level_description": "Again."})
    page.locator("[data-change-notice]").wait_for(state="visible", timeout=10_000)
    page.locator("[data-change-notice] [data-dismiss]").click()
    page.wait_for_timeout(3500)
    assert page.locator("[data-change-notice]").is_hidden()


@pytest.mark.slow
def test_a_failed_redraft_is_a_dismissible_notice_below_the_toolbar(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM

    # A drafting server that is not there: the re-draft fails with its reason.
    settings = Settings(
        data_dir=tmp_path / "data",
        import_workers=2,
        draft_engine="openai",
        draft_base_url="http://127.0.0.1:9/v1",
        draft_timeout_s=2,
    )
    with serving(settings) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 720}, bypass_csp=True)
        (iid,) = setup_images(url)
        page.goto(f"{url}/images/{iid}")
        bar = page.locator(".editor-bar")
        height = bar.bounding_box()["height"]
        assert page.locator("[data-cpu-warning]").count() == 0  # a server drafts, not the CPU
        page.click("form[action$='/draft'] button")
        failed = page.locator("#redraft-status [data-engine-not-ready]")
        failed.wait_for(timeout=60_000)
        # The engine is checked before any job: the server's absence is said at once.
        assert failed.inner_text().startswith("Cannot re-draft:")
        assert "cannot be reached" in failed.inner_text()
        # Below the toolbar, which stays one line.
        assert page.locator(".editor-bar #redraft-status").count() == 0
        assert bar.bounding_box()["height"] == height
        page.locator("#redraft-status [data-dismiss]").click()
        assert page.locator("#redraft-status").is_hidden()
        browser.close()
