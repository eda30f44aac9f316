"""Leaving the caption editor in real Chromium: nothing typed is lost, and "Leave site?" is
asked only when something could not be saved."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.browser.test_editor import caption, setup_images, wait_saved

pytestmark = pytest.mark.browser


def description(url: str, image_id: int) -> str:
    got = caption(url, image_id)["caption"]
    return got["high_level_description"] if got else ""


def watch_dialogs(page, *, leave: bool = False) -> list[str]:  # type: ignore[no-untyped-def]
    """The dialogs the page opens; each is answered Stay (or Leave)."""
    seen: list[str] = []

    def answer(dialog) -> None:  # type: ignore[no-untyped-def]
        seen.append(dialog.type)
        dialog.accept() if leave else dialog.dismiss()

    page.on("dialog", answer)
    return seen


@pytest.mark.parametrize("pause_ms", [150, 600])
def test_next_link_clicked_while_typing_saves_first_without_asking(
    page, live_server: str, pause_ms: int
) -> None:  # type: ignore[no-untyped-def]
    first, second = setup_images(live_server, n=2)
    page.goto(f"{live_server}/images/{first}")
    dialogs = watch_dialogs(page)
    page.locator("textarea[name=high_level_description]").click()
    page.keyboard.type("a scholar reading by candlelight")
    page.wait_for_timeout(pause_ms)
    page.locator("[data-next]").click()
    page.wait_for_url(f"**/images/{second}*", timeout=10_000)
    assert dialogs == []
    assert description(live_server, first) == "a scholar reading by candlelight"


def test_breadcrumb_clicked_while_typing_saves_first(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    (iid,) = setup_images(live_server)
    page.goto(f"{live_server}/images/{iid}")
    dialogs = watch_dialogs(page)
    page.locator("textarea[name=background]").click()
    page.keyboard.type("a dark wall")
    page.locator(".topbar nav a").nth(1).click()
    page.wait_for_url("**/datasets/*", timeout=10_000)
    assert dialogs == []
    got = caption(live_server, iid)["caption"]
    assert got["compositional_deconstruction"]["background"] == "a dark wall"


def test_tab_closed_while_typing_still_saves(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    (iid,) = setup_images(live_server)
    page.goto(f"{live_server}/images/{iid}")
    # Were "Leave site?" asked, Leave is what a person closing the tab answers.
    watch_dialogs(page, leave=True)
    page.locator("textarea[name=high_level_description]").click()
    page.keyboard.type("vanitas with a skull")
    page.close(run_before_unload=True)
    deadline = time.monotonic() + 10
    while description(live_server, iid) != "vanitas with a skull" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert description(live_server, iid) == "vanitas with a skull"


def test_no_leave_question_after_saved_with_the_cursor_still_in_the_field(
    page, live_server: str
) -> None:  # type: ignore[no-untyped-def]
    first, second = setup_images(live_server, n=2)
    page.goto(f"{live_server}/images/{first}")
    dialogs = watch_dialogs(page)
    field = page.locator("textarea[name=high_level_description]")
    field.click()
    page.keyboard.type("a lute on a table")
    wait_saved(page)
    page.wait_for_timeout(1500)  # seconds after "Saved · revision N", still in the field
    assert page.locator("[data-state-text]").inner_text().startswith("Saved · revision")
    assert page.evaluate("document.activeElement.name") == "high_level_description"
    page.locator("[data-next]").click()
    page.wait_for_url(f"**/images/{second}*", timeout=10_000)
    assert dialogs == []
    revisions = httpx.get(f"{live_server}/api/images/{first}/caption/revisions").json()
    assert len(revisions) == 1  # leaving the field saved nothing again


def test_leave_question_only_when_a_save_failed(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    first, second = setup_images(live_server, n=2)
    page.goto(f"{live_server}/images/{first}")
    dialogs = watch_dialogs(page)
    page.route("**/images/*/caption", lambda route: route.abort())
    page.locator("textarea[name=high_level_description]").click()
    page.keyboard.type("lost unless asked")
    page.wait_for_function("document.querySelector('#save-state').dataset.state === 'error'")
    # Leaving tries the save once more; it fails again, so the page stays and says so ...
    page.locator("[data-next]").click()
    page.wait_for_function("document.querySelector('#save-state').dataset.state === 'error'")
    assert f"/images/{first}" in page.url
    # ... and leaving anyway asks first.
    page.locator("[data-next]").click()
    page.wait_for_timeout(1000)
    assert dialogs == ["beforeunload"]
    assert f"/images/{first}" in page.url  # Stay: the typing is still here
    assert (
        page.locator("textarea[name=high_level_description]").input_value() == "lost unless asked"
    )
