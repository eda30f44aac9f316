"""User data is text, never markup: injected scripts in names, captions and filenames do not
run on any page, in real Chromium."""

from __future__ import annotations

import httpx
import pytest

from tests import imagefiles as f

pytestmark = pytest.mark.browser

PAYLOADS = [
    "<script>window.__pwned = (window.__pwned || 0) + 1</script>",
    '"><img src=x onerror="window.__pwned = (window.__pwned || 0) + 1">',
    '<svg onload="window.__pwned = (window.__pwned || 0) + 1"></svg>',
    "{{ 7*7 }}{% raw %}",
]
HOSTILE = " ".join(PAYLOADS)


@pytest.mark.slow
def test_injected_markup_is_shown_as_text_and_never_runs(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    url = live_server
    ds = httpx.post(
        f"{url}/api/datasets",
        json={"name": f"DS {PAYLOADS[1]}", "trigger_word": PAYLOADS[0], "notes": HOSTILE},
    ).json()["id"]
    name = PAYLOADS[1][:60] + ".jpg"
    r = httpx.post(
        f"{url}/api/datasets/{ds}/images",
        files=[("files", (name, f.jpeg_bytes(1, (300, 200)), "image/jpeg"))],
    )
    image = r.json()["imported"][0]["image_id"]
    caption = {
        "high_level_description": HOSTILE,
        "style_description": {"aesthetics": PAYLOADS[0], "lighting": PAYLOADS[2]},
        "compositional_deconstruction": {
            "background": PAYLOADS[1],
            "elements": [
                {"type": "obj", "desc": HOSTILE, "bbox": [100, 100, 500, 500]},
                {
                    "type": "text",
                    "text": PAYLOADS[0],
                    "desc": PAYLOADS[2],
                    "bbox": [600, 600, 900, 900],
                },
            ],
        },
    }
    assert (
        httpx.put(
            f"{url}/api/images/{image}/caption", json={"revision": 0, "caption": caption}
        ).status_code
        == 200
    )
    httpx.put(
        f"{url}/api/datasets/{ds}/style", json={"aesthetics": PAYLOADS[1], "lighting": PAYLOADS[0]}
    )
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pages = [
        "/",
        f"/datasets/{ds}",
        f"/datasets/{ds}/settings",
        f"/datasets/{ds}/style",
        f"/datasets/{ds}/replace",
        f"/datasets/{ds}/export",
        f"/images/{image}",
        f"/images/{image}/history",
    ]
    for path in pages:
        page.goto(f"{url}{path}")
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__pwned") is None, path
        assert (
            page.locator("script:not([src])").evaluate_all(
                "els => els.filter(e => e.textContent.includes('__pwned')).length"
            )
            == 0
        ), path
    # The text itself is on the page, as text: the user sees what they typed.
    page.goto(f"{url}/images/{image}")
    assert PAYLOADS[0] in page.locator("body").inner_text() or PAYLOADS[
        0
    ] in page.content().replace("&lt;", "<").replace("&gt;", ">")
    assert page.evaluate("window.__pwned") is None
    assert not dialogs
