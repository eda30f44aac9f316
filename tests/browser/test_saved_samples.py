"""In Chromium: a sample prompt edited in the export page's samples card and saved is still
there, edited, once the page is loaded again (issue 28 item 5)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from tests.browser.test_export_plan import caption, png
from tests.training.conftest import make_checkout, make_dataset

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("ATELIER_SHOTS", "/tmp/shots/samples"))


def test_an_edited_prompt_saved_is_kept_after_a_reload(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    dataset_id = httpx.post(
        f"{live_server}/api/datasets", json={"name": "Players", "trigger_word": "cps"}
    ).json()["id"]
    files = [("files", (f"{n:02d}.png", png(n, (1200, 900)), "image/png")) for n in range(3)]
    imported = httpx.post(
        f"{live_server}/api/datasets/{dataset_id}/images", files=files, timeout=60
    ).json()["imported"]
    for o in imported:
        r = httpx.put(
            f"{live_server}/api/images/{o['image_id']}/caption",
            json={"revision": 0, "caption": caption([100, 200, 700, 600])},
        )
        assert r.status_code == 200, r.text
    page.goto(f"{live_server}/datasets/{dataset_id}/export")
    card = page.locator("[data-sample-set]")
    assert "Default plan" in card.locator("[data-samples-state]").inner_text()
    first = card.locator("details.sample-prompt").first
    first.locator("summary").click()
    box = first.locator("textarea")
    edited = json.loads(box.input_value())
    edited["high_level_description"] = "Two card players, one hiding an ace."
    box.fill(json.dumps(edited, indent=1))
    card.locator("[data-save-samples]").click()
    page.wait_for_load_state()
    assert "Sample set saved" in card.locator("[data-samples-state]").inner_text()

    # Loaded again (a GET: reloading the POST's answer would send the form again).
    page.goto(f"{live_server}/datasets/{dataset_id}/export")
    card = page.locator("[data-sample-set]")
    state = card.locator("[data-samples-state]").inner_text()
    assert "Saved set" in state and "Sample set saved" not in state
    kept = json.loads(card.locator("details.sample-prompt").first.locator("textarea").input_value())
    assert kept["high_level_description"] == "Two card players, one hiding an ace."
    assert card.locator("[data-default-samples]").is_visible()
    # The plan beside the profile (its YAML) is written from the saved set too.
    assert "one hiding an ace" in (page.locator("#export-plan").text_content() or "")

    SHOTS.mkdir(parents=True, exist_ok=True)
    card.locator("details.sample-prompt").first.locator("summary").click()
    for w, h in ((1440, 900), (1280, 720)):
        page.set_viewport_size({"width": w, "height": h})
        card.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / f"export-samples-{w}x{h}.png"))

    # Back to the default plan, and undone.
    page.set_viewport_size({"width": 1440, "height": 900})
    card.locator("[data-default-samples]").click()
    page.wait_for_load_state()
    card = page.locator("[data-sample-set]")
    assert "Default plan" in card.locator("[data-samples-state]").inner_text()
    card.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "export-samples-dropped-1440x900.png"))
    card.locator("[data-restore-samples] button").click()
    page.wait_for_load_state()
    card = page.locator("[data-sample-set]")
    assert "The saved sample set is back." in card.locator("[data-samples-state]").inner_text()
    kept = json.loads(card.locator("details.sample-prompt").first.locator("textarea").input_value())
    assert kept["high_level_description"] == "Two card players, one hiding an ace."


def test_train_saves_an_edited_sample_set_first(  # type: ignore[no-untyped-def]
    page, live_server: str, tmp_path: Path
) -> None:
    checkout = make_checkout(tmp_path / "ai-toolkit")
    with httpx.Client(base_url=live_server, timeout=30) as api:
        dataset_id = make_dataset(api)  # type: ignore[arg-type]
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/datasets/{dataset_id}/export")
    card = page.locator("[data-sample-set]")
    unsaved = card.locator("[data-samples-unsaved]")
    assert not unsaved.is_visible()
    first = card.locator("details.sample-prompt").first
    first.locator("summary").click()
    box = first.locator("textarea")
    edited = json.loads(box.input_value())
    edited["high_level_description"] = "A scholar asleep over his book."
    box.fill(json.dumps(edited, indent=1))
    assert unsaved.is_visible() and "Unsaved changes" in unsaved.inner_text()
    card.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "export-samples-unsaved-1440x900.png"))

    form = page.locator("[data-train-form]")
    form.locator("input[name=aitk_dir]").fill(str(checkout))
    form.locator("summary").click()
    form.locator("input[name=steps]").fill("20")
    form.locator("input[name=save_every]").fill("10")
    form.locator("select[name=profile]").select_option("16gb")
    form.locator("[data-train]").click()
    page.wait_for_url("**/training/jobs/*")
    page.wait_for_selector("#train-job[data-job-status=done]", timeout=20_000)
    written = (checkout / "config" / "baroque_chiaroscuro.yaml").read_text()
    assert "A scholar asleep over his book." in written
    saved = httpx.get(f"{live_server}/api/datasets/{dataset_id}/samples").json()
    assert saved["saved"] is True
    assert saved["prompts"][0]["prompt"]["high_level_description"].startswith("A scholar asleep")
