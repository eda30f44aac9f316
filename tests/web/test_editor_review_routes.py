"""The editor's review routes over HTTP with real SQLite: the revision to poll, raw JSON, copying
from another image, statuses; without JavaScript and with bad input."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from app.config import Settings
from app.web.app import create_app
from tests.web.test_editor_pages import HX, api_caption, form, images, soup

CAPTION = {
    "high_level_description": "A scholar reads.",
    "style_description": {"aesthetics": "tenebrist", "lighting": "one candle"},
    "compositional_deconstruction": {
        "background": "a dark study",
        "elements": [{"type": "obj", "bbox": [100, 200, 300, 400], "desc": "the scholar"}],
    },
}


def test_the_revision_to_poll_is_the_newest_and_who_saved_it(
    client: TestClient, dataset_id: int
) -> None:
    (iid,) = images(client, dataset_id)
    assert client.get(f"/api/images/{iid}/caption/revision").json() == {
        "revision": 0,
        "status": "none",
        "author": None,
        "saved_at": None,
    }
    client.put(f"/api/images/{iid}/caption", json={"revision": 0, "caption": CAPTION})
    got = client.get(f"/api/images/{iid}/caption/revision").json()
    assert (got["revision"], got["status"], got["author"]) == (1, "edited", "user")
    assert client.get("/api/images/999/caption/revision").status_code == 404


def test_a_persons_edit_of_a_draft_is_edited_and_a_reviewed_status_stays(
    client: TestClient, dataset_id: int
) -> None:
    iid, fresh = images(client, dataset_id, 2)
    client.post(f"/images/{iid}/caption", data=form(0), headers=HX)
    assert api_caption(client, iid)["status"] == "edited"
    client.post(f"/api/images/{iid}/status", json={"status": "draft"})
    client.post(f"/images/{iid}/caption", data=form(1, background="later"), headers=HX)
    assert api_caption(client, iid)["status"] == "edited"
    client.post(f"/api/images/{iid}/status", json={"status": "approved"})
    client.post(f"/images/{iid}/caption", data=form(2, background="later still"), headers=HX)
    assert api_caption(client, iid)["status"] == "approved"
    page = soup(client.get(f"/images/{fresh}").text)
    assert page.select_one("[data-status]").text == "no caption"  # type: ignore[union-attr]


def test_raw_json_saves_without_javascript_and_refuses_with_a_sentence(
    client: TestClient, dataset_id: int
) -> None:
    (iid,) = images(client, dataset_id)
    page = soup(client.get(f"/images/{iid}/raw").text)
    assert page.select_one("h1") is not None  # a page of its own without JS
    assert page.select_one("[data-raw-text]").text == ""  # type: ignore[union-attr]
    r = client.post(
        f"/images/{iid}/raw",
        data={"revision": 0, "raw": json.dumps(CAPTION)},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/images/{iid}"
    assert api_caption(client, iid)["caption"]["high_level_description"] == "A scholar reads."
    shown = soup(client.get(f"/images/{iid}/raw").text).select_one("[data-raw-text]")
    assert json.loads(shown.text) == api_caption(client, iid)["caption"]  # type: ignore[union-attr]

    for raw, words in [
        ("", "Nothing to save"),
        ("[1, 2", "This is not JSON"),
        ('{"high_level_description": []}', "high-level description"),
        (
            '{"compositional_deconstruction": {"elements": [{"type": "obj", "desc": 3}]}}',
            "element 1 · description",
        ),
    ]:
        r = client.post(f"/images/{iid}/raw", data={"revision": 1, "raw": raw}, headers=HX)
        assert r.status_code == 422, raw
        assert words in soup(r.text).select_one("[data-raw-errors]").text  # type: ignore[union-attr]
    # Both sides changed the description: a conflict, said in a sentence, nothing saved.
    client.put(
        f"/api/images/{iid}/caption",
        json={"revision": 1, "caption": {**CAPTION, "high_level_description": "Theirs."}},
    )
    mine = {**CAPTION, "high_level_description": "Mine."}
    r = client.post(f"/images/{iid}/raw", data={"revision": 1, "raw": json.dumps(mine)}, headers=HX)
    assert r.status_code == 409
    assert "both changed" in soup(r.text).select_one("[data-raw-errors]").text  # type: ignore[union-attr]
    assert api_caption(client, iid)["revision"] == 2


def test_copy_from_another_image_refuses_what_is_not_one_to_copy(
    client: TestClient, dataset_id: int
) -> None:
    first, second = images(client, dataset_id, 2)
    data = {"revision": 0, "source": first, "part": "style"}
    r = client.post(f"/images/{second}/copy-previous", data=data, headers=HX)
    assert r.status_code == 422 and "has no caption to copy from" in r.headers["HX-Trigger"]
    r = client.post(f"/images/{second}/copy-previous", data=data | {"source": second}, headers=HX)
    assert r.status_code == 422 and "not another image" in r.headers["HX-Trigger"]
    other = client.post("/api/datasets", json={"name": "Other"}).json()["id"]
    (elsewhere,) = images(client, other)
    r = client.post(
        f"/images/{second}/copy-previous", data=data | {"source": elsewhere}, headers=HX
    )
    assert r.status_code == 422 and "not another image" in r.headers["HX-Trigger"]
    r = client.post(f"/images/{second}/copy-previous", data=data | {"part": "elements"}, headers=HX)
    assert r.status_code == 422
    client.put(f"/api/images/{first}/caption", json={"revision": 0, "caption": CAPTION})
    r = client.post(f"/images/{second}/copy-previous", data=data, follow_redirects=False)
    assert r.status_code == 303
    got = api_caption(client, second)
    assert got["caption"]["style_description"]["aesthetics"] == "tenebrist"
    assert got["caption"]["compositional_deconstruction"]["elements"] == []


def test_the_cpu_warning_sits_beside_redraft_only_when_drafting_would_run_on_the_cpu(
    tmp_path: Path,
) -> None:
    for device, shown in (("cpu", True), ("cuda", False)):
        settings = Settings(data_dir=tmp_path / device, draft_engine="local", draft_device=device)
        with TestClient(create_app(settings)) as client:
            dataset = client.post("/api/datasets", json={"name": "Baroque"}).json()["id"]
            (iid,) = images(client, dataset)
            warning = soup(client.get(f"/images/{iid}").text).select_one("[data-cpu-warning]")
            assert (warning is not None) is shown, device
            if warning is not None:
                assert "minutes an image" in warning["title"]  # type: ignore[operator]
                # In the toolbar beside the button, as a short word; the sentence on hover.
                assert warning.find_parent(class_="editor-bar") is not None
