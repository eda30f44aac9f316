"""The editor's and the dataset pages' buttons as plain forms: posted without HX-Request they
answer with a 303 back to the page (or the full page), and do what the htmx button does."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.web.test_editor_pages import HX, api_caption, form, images, soup


def _form_of(page: str, form_id: str) -> tuple[str, dict[str, str]]:
    """The action of the page's form `form_id` and the fields a browser would send with it."""
    html = soup(page)
    f = html.select_one(f"form#{form_id}")
    assert f is not None and f["method"] == "post", form_id
    fields = {
        i["name"]: i.get("value", "")
        for i in html.select(f"form#{form_id} input[name], input[name][form={form_id}]")
    }
    return str(f["action"]), {str(k): str(v) for k, v in fields.items()}


def test_post_palettes_without_js_fills_them_and_goes_back(
    client: TestClient, dataset_id: int
) -> None:
    (iid,) = images(client, dataset_id)
    client.post(f"/images/{iid}/caption", data=form(0, palette=""), headers=HX)
    page = client.get(f"/images/{iid}").text
    button = soup(page).select_one("[data-palettes-from-pixels]")
    assert button is not None and button["type"] == "submit" and button["form"] == "palettes-form"
    action, fields = _form_of(page, "palettes-form")
    assert fields == {"revision": "1"}
    r = client.post(action, data=fields, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/images/{iid}"
    assert client.get(r.headers["location"]).status_code == 200
    caption = api_caption(client, iid)
    assert caption["revision"] == 2
    assert caption["caption"]["style_description"]["color_palette"]
    revisions = client.get(f"/api/images/{iid}/caption/revisions").json()
    assert revisions[0]["action"] == "palettes"


def test_post_style_to_dataset_without_js_sets_the_block(
    client: TestClient, dataset_id: int
) -> None:
    (iid,) = images(client, dataset_id)
    client.post(f"/images/{iid}/caption", data=form(0, lighting="dawn"), headers=HX)
    page = client.get(f"/images/{iid}").text
    button = soup(page).select_one("button[form=style-to-dataset-form]")
    assert button is not None and button["type"] == "submit"
    action, fields = _form_of(page, "style-to-dataset-form")
    r = client.post(action, data=fields, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/images/{iid}"
    block = client.get(f"/api/datasets/{dataset_id}/style").json()
    assert block["lighting"] == "dawn" and block["medium"] == "painting"


def test_get_history_without_js_is_a_page_and_with_htmx_the_list(
    client: TestClient, dataset_id: int
) -> None:
    (iid,) = images(client, dataset_id)
    client.post(f"/images/{iid}/caption", data=form(0), headers=HX)
    client.post(f"/images/{iid}/caption", data=form(1, background="later"), headers=HX)
    editor = soup(client.get(f"/images/{iid}").text)
    link = editor.select_one(".history-card .history-body a")
    assert link is not None and link["href"] == f"/images/{iid}/history"
    page = soup(client.get(f"/images/{iid}/history").text)
    assert page.select_one("title") is not None and page.select_one("h1") is not None
    assert len(page.select("#history-list > li")) == 2
    reverts = page.select("#history-list form[method=post]")
    assert [f["action"] for f in reverts] == [f"/images/{iid}/revert"]
    fragment = soup(client.get(f"/images/{iid}/history", headers=HX).text)
    assert fragment.select_one("title") is None
    assert len(fragment.select("#history-list > li")) == 2


def test_post_batch_undo_without_js_answers_the_full_page(
    client: TestClient, dataset_id: int
) -> None:
    (iid,) = images(client, dataset_id)
    client.post(f"/images/{iid}/caption", data=form(0), headers=HX)
    data = {"find": "a man", "replace": "a monk", "field": "desc", "case_sensitive": "true"}
    page = soup(client.post(f"/datasets/{dataset_id}/replace/preview", data=data).text)
    apply = page.select_one("form[action$='/replace/apply']")
    assert apply is not None
    fields = {i["name"]: i["value"] for i in apply.select("input")}
    applied = soup(client.post(f"/datasets/{dataset_id}/replace/apply", data=fields).text)
    undo = applied.select_one("form[action*='/batches/']")
    assert undo is not None and undo["method"] == "post"
    r = client.post(str(undo["action"]))
    assert r.status_code == 200
    done = soup(r.text)
    assert done.select_one("title") is not None  # the whole page, not the fragment alone
    assert "Undone: 1 caption" in done.select_one("#batch-undone").text  # type: ignore[union-attr]
    els = api_caption(client, iid)["caption"]["compositional_deconstruction"]["elements"]
    assert els[0]["desc"] == "a man"
    fragment = soup(client.post(str(undo["action"]), headers=HX).text)
    assert fragment.select_one("title") is None and fragment.select_one("#batch-undone")


def test_palettes_of_a_missing_file_are_refused_with_a_sentence_by_page_and_api(
    client: TestClient, dataset_id: int
) -> None:
    (iid,) = images(client, dataset_id)
    client.post(f"/images/{iid}/caption", data=form(0), headers=HX)
    sha = client.get(f"/api/images/{iid}").json()["sha256"]
    client.app.state.store.blob_path(sha).unlink()  # type: ignore[attr-defined]
    sentence = f"The stored file of image {iid} is missing from the data dir."
    api = client.post(f"/api/images/{iid}/caption/palettes", json={"revision": 1})
    assert api.status_code == 404 and api.json()["detail"] == sentence
    page = client.post(f"/images/{iid}/palettes", data={"revision": 1})
    assert page.status_code == 404 and sentence in page.text
    htmx = client.post(f"/images/{iid}/palettes", data={"revision": 1}, headers=HX)
    assert htmx.status_code == 404 and sentence in htmx.headers["HX-Trigger"]
    assert api_caption(client, iid)["revision"] == 1  # nothing saved
