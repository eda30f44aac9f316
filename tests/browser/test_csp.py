"""Every page lives with the Content-Security-Policy: no violation is reported in real
Chromium, and htmx still swaps (the raw JSON card, the board's grid)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests import imagefiles as f
from tests.training.conftest import CAPTION
from tests.training.runfolders import make_run

pytestmark = pytest.mark.browser

WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""


@pytest.fixture
def strict_page(page):  # type: ignore[no-untyped-def]
    """A page of the same browser that keeps the CSP (the shared fixture's page bypasses it)."""
    context = page.context.browser.new_context()
    yield context.new_page()
    context.close()


@pytest.mark.slow
def test_every_page_works_under_the_csp(strict_page, live_server: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page = strict_page
    url = live_server
    ds = httpx.post(f"{url}/api/datasets", json={"name": "CSP", "trigger_word": "csp"}).json()["id"]
    files = [("files", (f"{n}.jpg", f.jpeg_bytes(n, (320, 240)), "image/jpeg")) for n in (1, 2)]
    r = httpx.post(f"{url}/api/datasets/{ds}/images", files=files, timeout=120)
    image = r.json()["imported"][0]["image_id"]
    put = httpx.put(f"{url}/api/images/{image}/caption", json={"revision": 0, "caption": CAPTION})
    assert put.status_code == 200, put.text
    run = make_run(tmp_path / "aitk")
    two = sorted(p.name for p in (run / "samples").glob("*__*.jpg"))[-2:]

    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.add_init_script(WATCH)
    pages = [
        "/",
        f"/datasets/{ds}",
        f"/datasets/{ds}/settings",
        f"/datasets/{ds}/style",
        f"/datasets/{ds}/replace",
        f"/datasets/{ds}/export",
        f"/datasets/{ds}/trash",
        f"/datasets/{ds}/duplicates",
        f"/datasets/{ds}/draft-jobs",
        f"/datasets/{ds}/delete",
        f"/images/{image}",
        f"/images/{image}/history",
        f"/images/{image}/review",
        "/training",
        f"/board?run={run}",
        f"/board/compare?run={run}&s={two[0]}&s={two[1]}",
        "/docs",
        "/login",
    ]
    for path in pages:
        r = page.goto(f"{url}{path}")
        assert r is not None and r.status < 400, path
        assert "script-src 'self'" in (r.headers.get("content-security-policy") or ""), path
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__csp") == [], path
    # htmx swaps under the policy: the raw JSON card loads when opened, not by a filter
    # expression (which htmx would evaluate as script).
    page.goto(f"{url}/images/{image}")
    page.locator("[data-raw-card] summary").click()
    page.locator("[data-raw-card] textarea").wait_for(timeout=5000)
    page.goto(f"{url}/board?run={run}")
    page.wait_for_load_state("networkidle")
    assert page.locator("img").count() > 0
    assert page.evaluate("window.__csp") == []
    assert not [c for c in console if "Content Security Policy" in c or "EvalError" in c], console
