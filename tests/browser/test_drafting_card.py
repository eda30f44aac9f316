"""The drafting card set up from the page, in real Chromium: the default model is not here,
the 2B is proposed, a loopback OpenAI-compatible server is typed in, tested on one image and
chosen without a restart; the editor's re-draft checks the engine before it asks anything."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests import imagefiles as f
from tests.drafting.fake_servers import FakeServer, serving

pytestmark = pytest.mark.browser


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache where the card looks (this machine's own stays out)."""
    from huggingface_hub import constants

    root = tmp_path / "hub"
    root.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    return root


def test_the_drafting_card_sets_up_a_server_from_the_page(  # type: ignore[no-untyped-def]
    hub: Path, page, live_server: str
) -> None:
    dataset_id = httpx.post(f"{live_server}/api/datasets", json={"name": "Tenebrism"}).json()["id"]
    files = [("files", ("candle.jpg", f.jpeg_bytes(1, (640, 480)), "image/jpeg"))]
    (image,) = httpx.post(f"{live_server}/api/datasets/{dataset_id}/images", files=files).json()[
        "imported"
    ]
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    fake = FakeServer("ollama", models=["qwen2-vl-7b"])
    with serving(fake) as (url,):
        page.goto(f"{live_server}/datasets/{dataset_id}")
        page.locator("details.card.draft > summary").click()  # folded once there are images
        card = page.locator('#draft-engine[data-ready="no"]')
        card.wait_for()
        # Before any job: the default model is not on this machine, and with no GPU the
        # 2B model is proposed.
        assert "is not on this machine" in card.locator("[data-readiness]").inner_text()
        assert "Without a GPU" in card.locator("[data-propose-small]").inner_text()
        # A server, typed as people type it (no scheme, no /v1): typing ticks "server".
        card.locator('input[name="base_url"]').fill(url.removeprefix("http://").removesuffix("/v1"))
        card.locator('input[name="server_model"]').fill("qwen2-vl-7b")
        assert card.locator('input[name="source"][value="server"]').is_checked()
        card.locator("[data-test-engine]").click()
        ok = page.locator("[data-trial-ok]")
        ok.wait_for(timeout=120_000)
        assert "drafted candle.jpg" in ok.inner_text()
        assert page.locator("[data-trial-draft]").inner_text() == "a man at a table"
        page.locator("[data-use-tested]").click()
        page.locator('#draft-engine[data-ready="yes"]').wait_for()
        assert page.locator("[data-chosen-model]").inner_text() == "qwen2-vl-7b"
        # Kept: a reload (or any dataset) drafts on that server; nothing was restarted.
        page.reload()
        page.locator("details.card.draft > summary").click()
        page.locator('#draft-engine[data-ready="yes"]').wait_for()
        assert "chosen here, for every dataset" in page.locator(".engine-line").inner_text()
        assert httpx.get(f"{live_server}/api/images/{image['image_id']}").json()["revision"] == 0

        # The editor: with no caption yet, re-draft drafts at once, asking nothing.
        page.goto(f"{live_server}/images/{image['image_id']}")
        redraft = page.get_by_role("button", name="re-draft")
        redraft.click()
        page.wait_for_function(
            "document.querySelector('textarea[name=high_level_description]').value"
            " === 'a man at a table'",
            timeout=60_000,
        )
        # Now there is one to replace: the engine answers, and the question comes (no dialog).
        page.get_by_role("button", name="re-draft").click()
        confirm = page.locator("[data-redraft-confirm]")
        confirm.wait_for()
        assert "Replace this caption with a new draft by qwen2-vl-7b?" in confirm.inner_text()
        confirm.get_by_role("button", name="Keep it").click()
        fake._stop()  # type: ignore[misc]
        page.wait_for_timeout(500)
    # The server gone: re-draft says so instead of asking, and starts no job.
    page.get_by_role("button", name="re-draft").click()
    refusal = page.locator("[data-engine-not-ready]")
    refusal.wait_for()
    assert "cannot be reached" in refusal.inner_text()
    assert page.locator("[data-redraft-confirm]").count() == 0
    assert dialogs == []
    jobs = httpx.get(f"{live_server}/api/datasets/{dataset_id}/draft-jobs").json()
    assert len(jobs) == 1  # the first re-draft only
