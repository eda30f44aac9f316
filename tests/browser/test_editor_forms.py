"""The editor's buttons that post forms of their own (palettes, the dataset's block), clicked in
Chromium after autosaves: they send the revision the page shows now, not the one it opened at."""

from __future__ import annotations

import httpx
import pytest

from tests.browser.test_editor import caption, setup_images, wait_saved

pytestmark = pytest.mark.browser


def test_palettes_and_dataset_block_after_autosaves(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    (iid,) = setup_images(live_server)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/images/{iid}")
    page.fill("textarea[name=high_level_description]", "A scholar by a candle.")
    wait_saved(page)
    page.fill("textarea[name=lighting]", "one candle, deep shadow")
    wait_saved(page)
    before = caption(live_server, iid)["revision"]
    assert before >= 1

    page.click("[data-palettes-from-pixels]")
    page.wait_for_function(
        f"() => document.querySelector('#editor [data-revision]').value === '{before + 1}'"
    )
    after = caption(live_server, iid)
    assert after["revision"] == before + 1
    assert after["caption"]["style_description"]["color_palette"]
    assert page.url.endswith(f"/images/{iid}")  # swapped in place, no navigation

    page.once("dialog", lambda d: d.accept())
    page.click("button[form=style-to-dataset-form]")
    page.wait_for_function(
        "() => document.querySelector('[data-style-field=lighting]').dataset.block !== ''"
    )
    (dataset,) = httpx.get(f"{live_server}/api/datasets").json()
    block = httpx.get(f"{live_server}/api/datasets/{dataset['id']}/style").json()
    assert block["lighting"] == "one candle, deep shadow"
