"""The editor marks what the drafting model was unsure of, in Chromium under the app's CSP: a
loopback server gives the lighting value and the first element's box low probabilities, and
the editor marks that field and that box, with the figure on hover."""

from __future__ import annotations

import json
import math
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser.conftest import CHROMIUM, serving
from tests.drafting.fake_servers import FakeServer
from tests.drafting.fake_servers import serving as serving_fakes
from tests.drafting.remote_jobs import draft_dataset
from tests.drafting.test_doubts import DRAFT, _reading, _tokens


def _logprobs(body: dict, content: str) -> list[dict]:
    out = []
    for token in _tokens(content):
        # '"candle"' is the lighting; the run holding 400 is the first element's box.
        p = 0.2 if token == '"candle"' else 0.3 if "400" in token else 0.99
        out.append({"token": token, "logprob": math.log(p), "bytes": list(token.encode())})
    return out


def test_the_editor_marks_the_unsure_field_and_box(tmp_path: Path) -> None:
    server = FakeServer(content=lambda b: json.dumps(DRAFT), logprobs=_logprobs, reading=_reading)
    with serving_fakes(server) as urls:
        job, settings = draft_dataset(tmp_path, urls, images=1)
    assert job.done == 1
    with serving(settings) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page()  # the app's CSP in force: doubts.js must live with it
        violations: list[str] = []
        page.on(
            "console", lambda m: violations.append(m.text) if "Content Security" in m.text else None
        )
        page.goto(f"{url}/images/1")
        page.locator("[data-doubts]").wait_for()
        lighting = page.locator('[data-style-field="lighting"]')
        assert "unsure" in (lighting.get_attribute("class") or "")
        assert "0.20" in (lighting.get_attribute("title") or "")
        boxes = page.locator("g.box")
        assert boxes.count() == 2
        first = boxes.nth(0)
        assert "unsure-box" in (first.get_attribute("class") or "")
        assert "0.30" in (first.locator("title").text_content() or "")
        assert "unsure-box" not in (boxes.nth(1).get_attribute("class") or "")
        # The list names the box, not the whole element a second time.
        assert page.locator("[data-doubt]").all_text_contents()[0].startswith("style · lighting")
        assert len(page.locator("[data-doubt]").all()) == 2
        assert not violations, violations
        browser.close()
