"""At 1280x720 the board's first row of samples is on the first screen (issue 25)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.training.conftest import make_checkout, make_dataset


def test_the_first_row_is_on_screen_at_1280x720(page, live_server: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    checkout = make_checkout(tmp_path / "ai-toolkit")
    with httpx.Client(base_url=live_server, timeout=30) as api:
        dataset_id = make_dataset(api)  # type: ignore[arg-type]
        body = {"steps": 30, "save_every": 10, "aitk_dir": str(checkout)}
        job = api.post(f"/api/datasets/{dataset_id}/train", json=body).json()["id"]
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{live_server}/training/jobs/{job}")
    page.wait_for_selector("#train-job[data-job-status=done]", timeout=20_000)
    page.goto(f"{live_server}/board?job={job}")
    cell = page.locator("[data-cell]").first
    box = cell.bounding_box()
    assert box is not None
    # The whole first sample is visible without scrolling.
    assert box["y"] + box["height"] <= 720, box
