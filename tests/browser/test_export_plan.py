"""In Chromium: beside the profile menu, the export page shows what the chosen profile changes
from the guide's config and why, its memory and the YAML; lint is judged again at the
profile's resolutions as soon as the profile changes."""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import pytest

from app.export import profiles
from tests import imagefiles as f

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("ATELIER_SHOTS", "/tmp/shots/yaml"))


def png(seed: int, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    f.picture(seed, size).save(buf, "PNG")
    return buf.getvalue()


def caption(box: list[int]) -> dict:
    return {
        "high_level_description": "A card player by candlelight.",
        "style_description": {
            "aesthetics": "Italian Baroque",
            "lighting": "one candle",
            "medium": "painting",
            "art_style": "oil on canvas",
        },
        "compositional_deconstruction": {
            "background": "a dark tavern",
            "elements": [{"type": "obj", "bbox": box, "desc": "a card player"}],
        },
    }


def test_the_profile_menu_shows_its_changes_memory_yaml_and_lint(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    dataset_id = httpx.post(
        f"{live_server}/api/datasets", json={"name": "Players", "trigger_word": "cps"}
    ).json()["id"]
    # Twelve 4:3 paintings fill batches; the panorama's top-edge box is cut only at 512/768.
    sizes = [(1200, 900)] * 12 + [(3000, 1000)]
    files = [("files", (f"{n:02d}.png", png(n, s), "image/png")) for n, s in enumerate(sizes)]
    imported = httpx.post(
        f"{live_server}/api/datasets/{dataset_id}/images", files=files, timeout=60
    ).json()["imported"]
    for o in imported:
        box = [0, 0, 40, 500] if o["filename"] == "12.png" else [100, 200, 700, 600]
        r = httpx.put(
            f"{live_server}/api/images/{o['image_id']}/caption",
            json={"revision": 0, "caption": caption(box)},
        )
        assert r.status_code == 200, r.text

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/datasets/{dataset_id}/export")
    page.select_option("select[name=profile]", "24gb")
    plan = page.locator("#export-plan")
    plan.filter(has_text="The 24gb profile").wait_for()
    assert "this is the guide's own config" in plan.locator("[data-changes]").inner_text()
    assert "about 17.0 GB" in plan.locator("[data-memory]").inner_text()
    assert "box_cropped" not in page.locator("#export-lint").inner_text()

    page.select_option("select[name=profile]", "96gb")
    plan.filter(has_text="The 96gb profile").wait_for()
    batch = plan.locator('[data-change="train.batch_size"]')
    assert "images a step" in batch.inner_text()
    n = int(batch.locator("td").nth(2).inner_text())
    assert n > 1
    steps = plan.locator('[data-change="train.steps"]').inner_text()
    assert f"x {n} = " in steps and "the guide's 2500 x 1" in steps
    for key in ("model.quantize", "model.low_vram", "train.lr", "datasets.resolution"):
        assert plan.locator(f'[data-change="{key}"] td').nth(3).inner_text().strip()
    assert "rank 16 as the guide" in plan.locator('[data-kept="network.linear"]').inner_text()
    # The estimate and the reasons say the same: training at batch n, and the caching pass
    # (the bf16 text encoder beside the transformer) as the peak.
    big = profiles.get_profile("96gb")
    memory = plan.locator("[data-memory]").inner_text()
    assert f"about {big.peak_gb(1024, n)} GB of 96 GB" in memory
    why = batch.locator("td").nth(3).inner_text()
    assert f"training at about {big.vram_estimate_gb(1024, n)} GB" in why
    te = plan.locator('[data-change="model.quantize_te"] td').nth(3).inner_text()
    assert f"about {big.caching_gb():.0f} GB then" in te
    plan.locator("[data-yaml] summary").click()
    yaml_text = plan.locator("[data-yaml] pre").inner_text()
    assert f"batch_size: {n}  # {n} images a step" in yaml_text
    # Lint judged again at 512/768/1024: the panorama's box is cut there.
    lint = page.locator("#export-lint")
    lint.filter(has_text="512/768/1024").wait_for()
    assert "box_cropped" in lint.inner_text() and "96gb" in lint.inner_text()
    page.locator(".export-card").evaluate("e => e.scrollIntoView()")
    page.screenshot(path=str(SHOTS / "export_96gb_1440.png"))
    page.screenshot(path=str(SHOTS / "export_96gb_1440_full.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 720})
    page.locator(".export-card").evaluate("e => e.scrollIntoView()")
    page.screenshot(path=str(SHOTS / "export_96gb_1280.png"))
    page.locator("#sample-set").scroll_into_view_if_needed()
    page.locator("#sample-set details").first.locator("summary").click()
    page.screenshot(path=str(SHOTS / "export_samples_1280.png"))
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/datasets/{dataset_id}/export")
    page.screenshot(path=str(SHOTS / "export_top_1440.png"))
    page.set_viewport_size({"width": 1280, "height": 720})
    page.screenshot(path=str(SHOTS / "export_top_1280.png"))
