"""The editor's form endpoints and the dataset-wide pages, over HTTP with real SQLite."""

from __future__ import annotations

import json
from typing import Any

from bs4 import BeautifulSoup
from fastapi.testclient import TestClient

from tests import imagefiles as f

HX = {"HX-Request": "true"}


def soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def images(client: TestClient, dataset_id: int, n: int = 1) -> list[int]:
    files = [("files", (f"{i}.jpg", f.jpeg_bytes(i), "image/jpeg")) for i in range(n)]
    r = client.post(f"/api/datasets/{dataset_id}/images", files=files)
    return [o["image_id"] for o in r.json()["imported"]]


def form(revision: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "revision": revision,
        "high_level_description": "A scholar.",
        "aesthetics": "Baroque",
        "lighting": "candle",
        "medium": "painting",
        "render": "oil",
        "palette": "#13100c #C8956A",
        "background": "dark",
        "el_type": ["obj", "text"],
        "el_box": ["0.1,0.2,0.5,0.6", "0.6,0.8,0.9,0.95"],
        "el_text": ["", "AVE"],
        "el_desc": ["a man", "a sign"],
        "el_palette": ["#3B2A1E", ""],
    }
    return base | fields


def api_caption(client: TestClient, iid: int) -> dict:
    return client.get(f"/api/images/{iid}/caption").json()


def test_form_save_writes_a_revision(client: TestClient, dataset_id: int) -> None:
    (iid,) = images(client, dataset_id)
    r = client.post(f"/images/{iid}/caption", data=form(0), headers=HX)
    assert r.status_code == 200
    assert r.headers["HX-Trigger"] == "captionSaved"
    state = soup(r.text).select_one("#save-state")
    assert state["data-state"] == "saved"  # type: ignore[index]
    assert state.select_one("[data-revision]")["value"] == "1"  # type: ignore[index,union-attr]
    cap = api_caption(client, iid)["caption"]
    assert cap["style_description"]["color_palette"] == ["#13100C", "#C8956A"]
    els = cap["compositional_deconstruction"]["elements"]
    assert els[0]["bbox"] == [200, 100, 600, 500]
    assert els[1] == {
        "type": "text",
        "bbox": [800, 600, 950, 900],
        "text": "AVE",
        "desc": "a sign",
        "color_palette": [],
    }


def test_form_errors_are_listed_and_nothing_saved(client: TestClient, dataset_id: int) -> None:
    (iid,) = images(client, dataset_id)
    bad = form(0, palette="#GGGGGG", el_box=["0.1,0.2,0.5", "0.5,0.5,0.5,0.9"])
    r = client.post(f"/images/{iid}/caption", data=bad, headers=HX)
    assert r.status_code == 422
    errors = [li.text for li in soup(r.text).select("#save-state ul.errors li")]
    assert errors[0] == "element 1: its box is not four numbers"
    assert errors[1] == "element 2: its box has no area"
    assert errors[2].startswith("style · palette: ")
    assert api_caption(client, iid)["revision"] == 0
    mismatched = form(0, el_desc=["only one"])
    assert client.post(f"/images/{iid}/caption", data=mismatched, headers=HX).status_code == 422


def test_stale_form_save_of_other_fields_merges_by_itself(
    client: TestClient, dataset_id: int
) -> None:
    (iid,) = images(client, dataset_id)
    client.post(f"/images/{iid}/caption", data=form(0), headers=HX)
    first_ids = [e["value"] for e in soup(client.get(f"/images/{iid}").text).select("[data-el-id]")]
    assert len(first_ids) == 2 and all(first_ids) and first_ids[0] != first_ids[1]
    # Another tab saves their background and a new description for element 2...
    theirs = form(1, background="theirs", el_id=first_ids, el_desc=["a man", "their sign"])
    client.post(f"/images/{iid}/caption", data=theirs, headers=HX)
    # ...while this one, still on revision 1, changes the description and element 1.
    mine = form(1, high_level_description="mine", el_id=first_ids, el_desc=["my man", "a sign"])
    r = client.post(f"/images/{iid}/caption", data=mine, headers=HX)
    assert r.status_code == 200
    assert r.headers["HX-Retarget"] == "#editor" and r.headers["HX-Trigger"] == "captionSaved"
    page = soup(r.text)
    assert "Merged with revision 2" in page.select_one("[data-merged]").text  # type: ignore[union-attr]
    assert page.select_one("textarea[name=background]").text == "theirs"  # type: ignore[union-attr]
    cap = api_caption(client, iid)
    assert cap["revision"] == 3
    assert cap["caption"]["high_level_description"] == "mine"
    assert cap["caption"]["compositional_deconstruction"]["background"] == "theirs"
    descs = [e["desc"] for e in cap["caption"]["compositional_deconstruction"]["elements"]]
    assert descs == ["my man", "their sign"]
    assert [e["value"] for e in page.select("[data-el-id]")] == first_ids


def test_stale_form_save_of_one_field_shows_only_it_then_merges(
    client: TestClient, dataset_id: int
) -> None:
    (iid,) = images(client, dataset_id)
    client.post(f"/images/{iid}/caption", data=form(0), headers=HX)
    client.post(f"/images/{iid}/caption", data=form(1, background="theirs"), headers=HX)
    r = client.post(
        f"/images/{iid}/caption",
        data=form(1, high_level_description="mine", background="mine too"),
        headers=HX,
    )
    assert r.status_code == 409
    page = soup(r.text)
    rows = [
        [c.text.strip() for c in tr.select("th, td")] for tr in page.select("table.diff tbody tr")
    ]
    assert rows == [["background", "dark", "theirs", "mine too"]]
    assert "yours for high-level description" in page.select_one("[data-merged-parts]").text  # type: ignore[union-attr]
    mine = page.select_one("input[name=mine]")["value"]  # type: ignore[index]
    data = {"revision": 2, "base": 1, "mine": mine}
    undecided = client.post(f"/images/{iid}/merge", data=data, headers=HX)
    assert undecided.status_code == 422
    message = json.loads(undecided.headers["HX-Trigger"])["atelier:error"]["message"]
    assert message == "Choose yours or theirs for background, then save the merge."
    r = client.post(f"/images/{iid}/merge", data=data | {"take:background": "theirs"}, headers=HX)
    assert r.status_code == 200
    cap = api_caption(client, iid)
    assert cap["revision"] == 3
    assert cap["caption"]["high_level_description"] == "mine"
    assert cap["caption"]["compositional_deconstruction"]["background"] == "theirs"
    bad = client.post(f"/images/{iid}/merge", data={"revision": 3, "mine": "{"}, headers=HX)
    assert bad.status_code == 422 and bad.headers["HX-Reswap"] == "none"
    assert "damaged" in json.loads(bad.headers["HX-Trigger"])["atelier:error"]["message"]


def test_editor_renders_fields_boxes_and_inheritance(client: TestClient, dataset_id: int) -> None:
    (iid,) = images(client, dataset_id)
    client.put(
        f"/api/datasets/{dataset_id}/style",
        json={"aesthetics": "Baroque", "lighting": "moon", "medium": "painting", "render": ""},
    )
    client.post(f"/images/{iid}/caption", data=form(0), headers=HX)
    page = soup(client.get(f"/images/{iid}").text)
    assert [i["value"] for i in page.select("#caption-form [data-elements] [data-el-box]")] == [
        "0.100000,0.200000,0.500000,0.600000",
        "0.600000,0.800000,0.900000,0.950000",
    ]
    badges = {
        label.select_one("[data-style-field]")["name"]: label.select_one("[data-inherit-badge]")
        for label in page.select("fieldset.style-block label")
        if label.select_one("[data-style-field]")
    }
    assert badges["aesthetics"].text.strip() == "from the dataset"  # type: ignore[union-attr]
    assert badges["lighting"].text.strip().startswith("overrides the dataset")  # type: ignore[union-attr]
    assert page.select_one("select[name=medium] option[selected]")["value"] == "painting"  # type: ignore[index]
    assert page.select_one("[data-render-label]").text == "Art style (technique, brushwork)"  # type: ignore[union-attr]
    assert page.select_one("dialog[data-help]") is not None


def test_review_status_and_advance(client: TestClient, dataset_id: int) -> None:
    a, b = images(client, dataset_id, 2)
    client.post(f"/images/{a}/caption", data=form(0), headers=HX)
    r = client.post(
        f"/images/{a}/status", data={"status": "approved", "advance": f"/images/{b}"}, headers=HX
    )
    # The next image is told which was reviewed, to confirm it there.
    assert r.status_code == 204 and r.headers["HX-Location"] == f"/images/{b}?reviewed={a}"
    assert api_caption(client, a)["status"] == "approved"
    page = soup(client.get(f"/images/{a}").text)
    assert page.select_one("[data-next]")["href"] == f"/images/{b}"  # type: ignore[index]
    # Filtered to approved images only, the first has no next one.
    page = soup(client.get(f"/images/{a}?status=approved").text)
    assert page.select_one("[data-editor]")["data-next-url"] == ""  # type: ignore[index]
    r = client.post(f"/images/{b}/status", data={"status": "approved"}, headers=HX)
    assert r.status_code == 422 and "no caption yet" in r.headers["HX-Trigger"]


def test_undo_and_history_through_the_editor(client: TestClient, dataset_id: int) -> None:
    (iid,) = images(client, dataset_id)
    client.post(f"/images/{iid}/caption", data=form(0), headers=HX)
    client.post(f"/images/{iid}/caption", data=form(1, background="later"), headers=HX)
    r = client.post(f"/images/{iid}/undo", data={"revision": 2}, headers=HX)
    assert r.status_code == 200
    assert soup(r.text).select_one("textarea[name=background]").text == "dark"  # type: ignore[union-attr]
    history = soup(client.get(f"/images/{iid}/history").text)
    items = history.select("li")
    assert len(items) == 3
    assert "undo by user" in items[0].text and "background" in items[0].text
    r = client.post(f"/images/{iid}/undo", data={"revision": 3}, headers=HX)
    assert r.status_code == 422 and "nothing to undo" in r.headers["HX-Trigger"]


def test_style_page_preview_apply_undo(client: TestClient, dataset_id: int) -> None:
    a, b = images(client, dataset_id, 2)
    client.post(f"/images/{a}/caption", data=form(0), headers=HX)
    client.post(f"/images/{b}/caption", data=form(0, lighting="sun"), headers=HX)
    client.post(
        f"/datasets/{dataset_id}/style",
        data={"aesthetics": "Baroque", "lighting": "candle", "medium": "painting", "render": "oil"},
    )
    r = client.post(f"/datasets/{dataset_id}/style/preview", headers=HX)
    page = soup(r.text)
    assert [a.text for a in page.select("[data-changes] > li > a")] == ["1.jpg"]
    assert [td.text for td in page.select("[data-changes] td")] == ["sun", "candle"]
    previewed = page.select_one("input[name=previewed]")["value"]  # type: ignore[index]
    r = client.post(
        f"/datasets/{dataset_id}/style/apply", data={"previewed": previewed}, headers=HX
    )
    assert "1 caption now inherit" in r.text
    lighting = api_caption(client, b)["caption"]["style_description"]["lighting"]
    assert lighting == "candle"
    undo = soup(r.text).select_one("form")["action"]  # type: ignore[index]
    r = client.post(undo, headers=HX)  # type: ignore[arg-type]
    assert "Undone: 1 caption" in r.text
    assert api_caption(client, b)["caption"]["style_description"]["lighting"] == "sun"


def test_replace_page_preview_apply(client: TestClient, dataset_id: int) -> None:
    a, b = images(client, dataset_id, 2)
    client.post(f"/images/{a}/caption", data=form(0), headers=HX)
    client.post(f"/images/{b}/caption", data=form(0, el_desc=["a man", "a man's sign"]), headers=HX)
    data = {"find": "a man", "replace": "a monk", "field": "desc", "case_sensitive": "true"}
    page = soup(client.post(f"/datasets/{dataset_id}/replace/preview", data=data, headers=HX).text)
    changed = [tr.select_one("th").text for tr in page.select("[data-changes] tr")]  # type: ignore[union-attr]
    assert changed == ["element 1 · description"] * 2 + ["element 2 · description"]
    apply = page.select_one("form[action$='/replace/apply']")
    fields = {i["name"]: i["value"] for i in apply.select("input")}  # type: ignore[union-attr]
    r = client.post(f"/datasets/{dataset_id}/replace/apply", data=fields, headers=HX)
    assert "Changed 2 captions" in r.text
    els = api_caption(client, b)["caption"]["compositional_deconstruction"]["elements"]
    assert [e["desc"] for e in els] == ["a monk", "a monk's sign"]
    r = client.post(
        f"/datasets/{dataset_id}/replace/preview", data={"find": "(", "regex": "true"}, headers=HX
    )
    # Said in the result's place, which it replaces (issue 17: not only a toast).
    error = soup(r.text).select_one("#result [data-replace-error]")
    assert r.status_code == 422 and error is not None and "regular expression" in error.text


def test_approving_a_weak_caption_says_why_and_still_approves(
    client: TestClient, dataset_id: int
) -> None:
    first, second = images(client, dataset_id, 2)
    weak = form(0, high_level_description="", background="", el_type=[], el_box=[])
    weak |= {"el_text": [], "el_desc": [], "el_palette": []}
    client.post(f"/images/{first}/caption", data=weak, headers=HX)
    client.post(f"/images/{second}/caption", data=form(0), headers=HX)
    # With `a` (approve and go on) the next image opens and says why the first may be weak.
    r = client.post(
        f"/images/{first}/status",
        data={"status": "approved", "advance": f"/images/{second}"},
        headers=HX,
    )
    assert r.status_code == 204
    assert r.headers["HX-Location"] == f"/images/{second}?reviewed={first}&weak={first}"
    assert api_caption(client, first)["status"] == "approved"
    notice = soup(client.get(r.headers["HX-Location"]).text).select_one("[data-weak]")
    assert notice is not None
    assert " ".join(notice.text.split()) == (
        "0.jpg is approved, but it may be weak: it has an empty high-level description, an "
        "empty background and no elements (the model learns the style from what the caption "
        "names)."
    )
    # The button without a next image: the review block says it.
    r = client.post(f"/images/{first}/status", data={"status": "approved"}, headers=HX)
    shown = soup(r.text).select_one("[data-weak]")
    assert shown is not None
    assert " ".join(shown.text.split()).startswith("This caption is approved, but it may be weak")
    # A full caption approves quietly.
    r = client.post(f"/images/{second}/status", data={"status": "approved"}, headers=HX)
    assert soup(r.text).select_one("[data-weak]") is None
    lint = client.get(f"/api/datasets/{dataset_id}/lint").json()
    findings = lint["findings"] if isinstance(lint, dict) else lint
    weak_findings = [x for x in findings if x["code"] == "weak_approved"]
    assert [(x["image_id"], x["severity"]) for x in weak_findings] == [(first, "warning")]
    api = client.post(f"/api/images/{first}/status", json={"status": "approved"}).json()
    assert api["status"] == "approved" and api["warning"].startswith("Approved, but it may be weak")
