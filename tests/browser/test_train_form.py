"""Train refusals land on the Train form itself, keeping what was typed (issue 25 item 9)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests import imagefiles as f
from tests.training.conftest import make_checkout, make_dataset


def test_a_refused_train_stays_on_the_form_with_its_values(  # type: ignore[no-untyped-def]
    page, live_server: str, tmp_path: Path
) -> None:
    not_a_checkout = tmp_path / "somewhere"
    not_a_checkout.mkdir()
    checkout = make_checkout(tmp_path / "ai-toolkit")
    with httpx.Client(base_url=live_server, timeout=30) as api:
        dataset_id = make_dataset(api)  # type: ignore[arg-type]
        # An image without a caption: a lint error that stops the export unless forced.
        files = [("files", ("3.jpg", f.jpeg_bytes(3, (640, 480)), "image/jpeg"))]
        api.post(f"/api/datasets/{dataset_id}/images", files=files).raise_for_status()
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/datasets/{dataset_id}/export")
    form = page.locator("[data-train-form]")
    form.locator("input[name=aitk_dir]").fill(str(not_a_checkout))
    form.locator("summary").click()
    form.locator("input[name=steps]").fill("30")
    form.locator("input[name=save_every]").fill("10")
    form.locator("select[name=profile]").select_option("16gb")
    form.locator("[data-train]").click()
    error = page.locator("[data-train-form] [data-train-error]")
    error.wait_for()
    assert page.url.endswith(f"/datasets/{dataset_id}/export")  # not a dead-end page
    text = " ".join(error.inner_text().split())
    assert "is not an AI-Toolkit checkout" in text and "run.py" in text
    assert "git clone https://github.com/ostris/ai-toolkit.git" in text
    form = page.locator("[data-train-form]")
    assert form.locator("input[name=aitk_dir]").input_value() == str(not_a_checkout)
    assert form.locator("input[name=steps]").input_value() == "30"
    assert form.locator("input[name=save_every]").input_value() == "10"
    assert form.locator("select[name=profile]").input_value() == "16gb"

    # A lint error: the sentence points at the checkbox, in words, not at the API.
    form.locator("input[name=aitk_dir]").fill(str(checkout))
    form.locator("[data-train]").click()
    page.wait_for_function(
        "document.querySelector('[data-train-error]')?.innerText.includes('export anyway')"
    )
    text = page.inner_text("[data-train-form] [data-train-error]")
    assert '"force"' not in text and "git clone" not in text
    form = page.locator("[data-train-form]")
    assert form.locator("input[name=steps]").input_value() == "30"
    form.locator("[data-train-force]").check()
    form.locator("[data-train]").click()
    page.wait_for_url("**/training/jobs/*")
    page.wait_for_selector("#train-job[data-job-status=done]", timeout=20_000)
    assert "step 30 of 30" in " ".join(page.inner_text("[data-progress-text]").split())
