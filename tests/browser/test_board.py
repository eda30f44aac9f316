"""From the dataset page: train (the stand-in trainer), open the board, compare two steps
side by side with one zoom, and use one of them."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.training.conftest import make_checkout, make_dataset


@pytest.mark.slow
def test_train_compare_two_steps_and_pick_one(page, live_server: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    checkout = make_checkout(tmp_path / "ai-toolkit")
    with httpx.Client(base_url=live_server, timeout=30) as api:
        dataset_id = make_dataset(api)  # type: ignore[arg-type]
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/datasets/{dataset_id}")
    page.click("[data-train-section] summary")
    form = page.locator("[data-train-form]")
    form.locator("input[name=aitk_dir]").fill(str(checkout))
    form.locator("summary").click()
    form.locator("input[name=steps]").fill("30")
    form.locator("input[name=save_every]").fill("10")
    form.locator("[data-train]").click()
    page.wait_for_url("**/training/jobs/*")
    page.wait_for_selector("#train-job[data-job-status=done]", timeout=20_000)
    assert "step 30 of 30" in " ".join(page.inner_text("[data-progress-text]").split())
    page.click("[data-open-board]")
    page.wait_for_selector("[data-cell]")

    # Keyboard: the first sample is prompt 0 at step 0 (the reference); right twice is
    # step 20, space selects it; left once is step 10, space selects it too.
    page.locator("[data-cell]").first.focus()
    for key in ("ArrowRight", "ArrowRight", " ", "ArrowLeft", " "):
        page.keyboard.press(key)
    assert page.inner_text("[data-compare-count]") == "2"
    selected = page.locator("[data-cell].selected")
    assert sorted(selected.evaluate_all("els => els.map(e => e.dataset.step)")) == ["10", "20"]
    page.keyboard.press("b")
    assert page.locator("[data-cell] .prompt-boxes i").first.is_visible()
    page.keyboard.press("c")
    page.wait_for_url("**/board/compare*")
    views = page.locator("[data-viewport]")
    assert views.count() == 2
    box = views.nth(0).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -300)
    transforms = page.locator("[data-pane]").evaluate_all("els => els.map(e => e.style.transform)")
    assert transforms[0] == transforms[1] and "scale(1.25)" in transforms[0]

    page.click("[data-add-reference]")
    page.wait_for_selector(".compare-item[data-step='0']")
    assert page.locator("[data-viewport]").count() == 3

    loras = tmp_path / "ComfyUI" / "models" / "loras"
    loras.mkdir(parents=True)
    item = page.locator(".compare-item[data-step='10']")
    item.locator("[data-pick-to]").fill(str(loras))
    item.locator("[data-use-step]").click()
    page.wait_for_selector("[data-picked]")
    assert [p.name for p in loras.iterdir()] == ["baroque_chiaroscuro_step000010.safetensors"]
