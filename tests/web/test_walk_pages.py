"""Pages as a newcomer meets them: inherited style fields fold away, the style block shows the
guide's example wording, an empty dataset shows its drop zone rather than toolbars."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.web.test_editor_pages import HX, form, images, soup

BLOCK = {"aesthetics": "tenebrist", "lighting": "one candle", "medium": "painting", "render": "oil"}


def test_style_fields_all_from_the_dataset_fold_away(client: TestClient, dataset_id: int) -> None:
    a, b = images(client, dataset_id, 2)
    client.put(f"/api/datasets/{dataset_id}/style", json=BLOCK)
    inherit = {k: "" for k in ("aesthetics", "lighting", "medium", "render")}
    client.post(f"/images/{a}/caption", data=form(0, **inherit), headers=HX)
    client.post(f"/images/{b}/caption", data=form(0, **inherit | {"lighting": "moon"}), headers=HX)
    folded = soup(client.get(f"/images/{a}").text).select_one("details[data-style-fields]")
    assert folded is not None and not folded.has_attr("open")
    assert "From the dataset" in folded.select_one("summary").text  # type: ignore[union-attr]
    # Their fields are still in the form, so a save keeps them.
    assert folded.select_one("textarea[name=lighting]") is not None
    shown = soup(client.get(f"/images/{b}").text).select_one("details[data-style-fields]")
    assert shown is not None and shown.has_attr("open")  # one overrides the block: in view


def test_the_style_block_form_shows_the_guides_example_wording(
    client: TestClient, dataset_id: int
) -> None:
    page = soup(client.get(f"/datasets/{dataset_id}/style").text)
    assert (
        "Italian Baroque, tenebrist" in page.select_one("textarea[name=aesthetics]")["placeholder"]
    )  # type: ignore[index,operator]
    assert "upper left" in page.select_one("textarea[name=lighting]")["placeholder"]  # type: ignore[index,operator]
    assert "Oil on canvas" in page.select_one("textarea[name=render]")["placeholder"]  # type: ignore[index,operator]


def test_an_empty_dataset_shows_its_drop_zone_not_toolbars(
    client: TestClient, dataset_id: int
) -> None:
    page = soup(client.get(f"/datasets/{dataset_id}").text)
    assert page.select_one("#grid[data-empty] [data-empty-dataset]") is not None
    assert page.select("#grid .bulk-bar, #grid .filters") == []
    assert page.select_one("details[data-upload][open] .dropzone.first") is not None
    (iid,) = images(client, dataset_id)
    page = soup(client.get(f"/datasets/{dataset_id}").text)
    assert page.select_one("#grid[data-empty]") is None
    assert page.select_one("#grid .bulk-bar") is not None
    name = page.select_one(f".tile[data-image-id='{iid}'] a.name")
    assert name is not None and name["href"] == f"/images/{iid}"
