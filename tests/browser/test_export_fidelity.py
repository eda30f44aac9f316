"""In Chromium: the upload report says when boxes could be either, and the export page says
what its rules protect and how to export anyway (never a CLI flag)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests import imagefiles as f

pytestmark = pytest.mark.browser


def shot(page, folder: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    """A full-page screenshot beside the test's files, to look at after a run."""
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_upload_report_says_boxes_could_be_either(page, live_server: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page.set_viewport_size({"width": 1440, "height": 900})
    ds = httpx.post(f"{live_server}/api/datasets", json={"name": "Boxes", "trigger_word": "bx"})
    dataset_id = ds.json()["id"]
    image = f.png(tmp_path / "a.png", 1, (600, 400))
    cap = {
        "compositional_deconstruction": {
            "background": "a wall",
            "elements": [{"type": "obj", "bbox": [10, 10, 200, 300], "desc": "a door"}],
        }
    }
    (tmp_path / "a.json").write_text(json.dumps(cap))
    page.goto(f"{live_server}/datasets/{dataset_id}")
    page.set_input_files("[data-file-input]", [str(image), str(tmp_path / "a.json")])
    status = page.locator("[data-upload-status]")
    status.filter(has_text="Done:").wait_for(timeout=60_000)
    assert "could be 0..1000 or pixels" in status.inner_text()
    line = page.locator("[data-upload-report] li").filter(has_text="a.png: imported")
    assert "could be 0..1000 or pixels" in line.inner_text()
    shot(page, tmp_path, "upload_report")

    page.goto(f"{live_server}/datasets/{dataset_id}/export")
    page.fill("input[name=out_dir]", str(tmp_path / "aitk"))
    page.click("button[value=folder]")
    error = page.locator("p.error")
    error.wait_for()
    assert "tick 'export anyway'" in error.inner_text()
    assert "--force" not in page.content()
    assert "could be pixels" in error.inner_text()
    page.click("[data-lint-rules] summary")
    assert "3,072 tokens" in page.locator("[data-lint-rules]").inner_text()
    shot(page, tmp_path, "export_refused")
    page.check("input[name=force]")
    page.fill("input[name=out_dir]", str(tmp_path / "aitk"))
    page.click("button[value=folder]")
    page.locator("[data-export-report]").wait_for()
    assert "Exported anyway despite 1 error" in page.locator("[data-export-report]").inner_text()
    assert "No entry of the trainer's latent cache was stale" in page.content()
    shot(page, tmp_path, "export_forced")
