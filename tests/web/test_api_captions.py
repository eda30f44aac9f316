"""The caption API: save, concurrency, validation, revisions, status, style block, replace."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from tests import imagefiles as f

CAPTION: dict[str, Any] = {
    "high_level_description": "A bearded scholar reads by candlelight.",
    "style_description": {
        "aesthetics": "Italian Baroque, tenebrist",
        "lighting": "one candle, deep shadow",
        "medium": "painting",
        "art_style": "oil on canvas, warm glazes",
        "color_palette": ["#13100C", "#C8956A"],
    },
    "compositional_deconstruction": {
        "background": "a dark study",
        "elements": [
            {
                "type": "obj",
                "bbox": [100, 200, 700, 600],
                "desc": "the scholar",
                "color_palette": ["#3B2A1E"],
            },
            {
                "type": "text",
                "bbox": [800, 100, 900, 400],
                "text": "VANITAS\nVANITATUM",
                "desc": "a carved inscription",
                "color_palette": [],
            },
        ],
    },
}


def image_id(client: TestClient, dataset_id: int, seed: int = 1, size=(1200, 1000)) -> int:  # type: ignore[no-untyped-def]
    r = client.post(
        f"/api/datasets/{dataset_id}/images",
        files=[("files", (f"p{seed}.jpg", f.jpeg_bytes(seed, size), "image/jpeg"))],
    )
    return r.json()["imported"][0]["image_id"]


def put(client: TestClient, iid: int, revision: int, caption: Any, **kw: Any):  # type: ignore[no-untyped-def]
    return client.put(
        f"/api/images/{iid}/caption", json={"revision": revision, "caption": caption, **kw}
    )


def test_get_caption_of_new_image_is_empty(client: TestClient, dataset_id: int) -> None:
    iid = image_id(client, dataset_id)
    assert client.get(f"/api/images/{iid}/caption").json() == {
        "revision": 0,
        "status": "none",
        "caption": None,
        "author": None,
        "saved_at": None,
    }


def test_put_caption_round_trips_official(client: TestClient, dataset_id: int) -> None:
    iid = image_id(client, dataset_id)
    r = put(client, iid, 0, CAPTION)
    assert r.status_code == 200, r.text
    assert r.json()["revision"] == 1
    # A person's save is "edited"; "draft" is the word for the engine's.
    assert r.json()["status"] == "edited"
    got = client.get(f"/api/images/{iid}/caption").json()
    assert got["caption"] == CAPTION
    assert list(got["caption"]["style_description"]) == [
        "aesthetics",
        "lighting",
        "medium",
        "art_style",
        "color_palette",
    ]
    assert got["author"] == "user"


def test_put_same_caption_twice_adds_no_revision(client: TestClient, dataset_id: int) -> None:
    iid = image_id(client, dataset_id)
    put(client, iid, 0, CAPTION)
    assert put(client, iid, 1, CAPTION).json()["revision"] == 1


def test_stale_save_gets_409_with_current(client: TestClient, dataset_id: int) -> None:
    iid = image_id(client, dataset_id)
    put(client, iid, 0, CAPTION)
    mine = CAPTION | {"high_level_description": "mine"}
    theirs = CAPTION | {"high_level_description": "theirs"}
    assert put(client, iid, 1, theirs).status_code == 200
    r = put(client, iid, 1, mine)
    assert r.status_code == 409
    body = r.json()
    assert "revision 2 was saved since" in body["detail"]
    assert body["current"]["revision"] == 2
    assert body["current"]["caption"]["high_level_description"] == "theirs"
    # Nothing was lost: the newest is theirs, and saving over 2 works.
    assert put(client, iid, 2, mine).json()["revision"] == 3


@pytest.mark.parametrize(
    ("caption", "field"),
    [
        (
            {
                "compositional_deconstruction": {
                    "elements": [{"type": "obj", "bbox": [0, 0, 2000, 5]}]
                }
            },
            "caption.compositional_deconstruction.elements.0.bbox.2",
        ),
        (
            {"compositional_deconstruction": {"elements": [{"type": "text", "desc": "a sign"}]}},
            "caption.compositional_deconstruction.elements.0",
        ),
        (
            {"style_description": {"medium": "oil"}, "compositional_deconstruction": {}},
            "caption.style_description.medium",
        ),
        (
            {
                "style_description": {"color_palette": ["#12345G"]},
                "compositional_deconstruction": {},
            },
            "caption.style_description.color_palette.0",
        ),
        ({"compositional_deconstruction": {}, "colour": "red"}, "caption.colour"),
        ({"high_level_description": "no composition"}, "caption.compositional_deconstruction"),
        (
            {
                "compositional_deconstruction": {
                    "elements": [{"type": "obj", "bbox": [500, 0, 100, 10]}]
                }
            },
            "caption.compositional_deconstruction.elements.0",
        ),
    ],
)
def test_invalid_caption_gets_422_with_field(
    client: TestClient, dataset_id: int, caption: dict, field: str
) -> None:
    iid = image_id(client, dataset_id)
    r = put(client, iid, 0, caption)
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]]
    assert r.json()["detail"].startswith("The caption is not valid")
    assert client.get(f"/api/images/{iid}/caption").json()["revision"] == 0


def test_malformed_body_gets_422(client: TestClient, dataset_id: int) -> None:
    iid = image_id(client, dataset_id)
    r = client.put(
        f"/api/images/{iid}/caption",
        content=b'{"revision": 0, "caption": ',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    assert put(client, iid, -1, CAPTION).status_code == 422
    assert put(client, iid, 0, CAPTION, dialect="yaml").status_code == 422
    assert (
        client.put("/api/images/999/caption", json={"revision": 0, "caption": CAPTION}).status_code
        == 404
    )


def test_put_guide_dialect_pixel_boxes(client: TestClient, dataset_id: int) -> None:
    iid = image_id(client, dataset_id, size=(1200, 1000))
    guide = {
        "style_description": {"medium": "Oil painting.", "photo": "oil on canvas"},
        "compositional_deconstruction": {
            "elements": [{"type": "obj", "bbox": [120, 100, 600, 500], "desc": "a man"}]
        },
    }
    r = put(client, iid, 0, guide, dialect="guide")
    assert r.status_code == 200, r.text
    cap = r.json()["caption"]
    assert cap["style_description"] == {"medium": "painting", "art_style": "oil on canvas"}
    # pixel [x1,y1,x2,y2] of 1200x1000 -> official [y_min,x_min,y_max,x_max] in 0..1000
    assert cap["compositional_deconstruction"]["elements"][0]["bbox"] == [100, 100, 500, 500]


def test_undo_redo_revert_and_history(client: TestClient, dataset_id: int) -> None:
    iid = image_id(client, dataset_id)
    texts = ["one", "two", "three"]
    for n, t in enumerate(texts):
        put(client, iid, n, CAPTION | {"high_level_description": t})

    def hld() -> str:
        return client.get(f"/api/images/{iid}/caption").json()["caption"]["high_level_description"]

    r = client.post(f"/api/images/{iid}/caption/undo", json={"revision": 3})
    assert r.json()["revision"] == 4 and hld() == "two"
    client.post(f"/api/images/{iid}/caption/undo", json={"revision": 4})
    assert hld() == "one"
    r = client.post(f"/api/images/{iid}/caption/undo", json={"revision": 5})
    assert r.status_code == 422 and "nothing to undo" in r.json()["detail"]
    client.post(f"/api/images/{iid}/caption/redo", json={"revision": 5})
    assert hld() == "two"
    client.post(f"/api/images/{iid}/caption/redo", json={"revision": 6})
    assert hld() == "three"
    r = client.post(f"/api/images/{iid}/caption/redo", json={"revision": 7})
    assert r.status_code == 422
    # A stale undo is refused like a stale save.
    assert client.post(f"/api/images/{iid}/caption/undo", json={"revision": 3}).status_code == 409
    client.post(f"/api/images/{iid}/caption/revert", json={"revision": 7, "to": 1})
    assert hld() == "one"
    history = client.get(f"/api/images/{iid}/caption/revisions").json()
    assert [h["revision"] for h in history] == [8, 7, 6, 5, 4, 3, 2, 1]
    assert [h["action"] for h in history[:2]] == ["revert", "redo"]
    assert history[-2]["changed"] == "high-level description"
    old = client.get(f"/api/images/{iid}/caption/revisions/2").json()
    assert old["caption"]["high_level_description"] == "two"
    assert client.get(f"/api/images/{iid}/caption/revisions/99").status_code == 404


def test_set_status(client: TestClient, dataset_id: int) -> None:
    iid = image_id(client, dataset_id)
    r = client.post(f"/api/images/{iid}/status", json={"status": "approved"})
    assert r.status_code == 422 and "no caption yet" in r.json()["detail"]
    put(client, iid, 0, CAPTION)
    assert (
        client.post(f"/api/images/{iid}/status", json={"status": "approved"}).json()["status"]
        == "approved"
    )
    assert client.get(f"/api/datasets/{dataset_id}").json()["status_counts"]["approved"] == 1
    listed = client.get(f"/api/datasets/{dataset_id}/images?status=approved").json()
    assert [i["id"] for i in listed] == [iid]
    # Saving it again unchanged keeps it approved; changing it is test_review_state.py's.
    put(client, iid, 1, CAPTION)
    assert client.get(f"/api/images/{iid}/caption").json()["status"] == "approved"
    assert client.post(f"/api/images/{iid}/status", json={"status": "none"}).status_code == 422
    assert client.post(f"/api/images/{iid}/status", json={"status": "bogus"}).status_code == 422


def test_style_block_inherited_and_overridden(client: TestClient, dataset_id: int) -> None:
    a, b = image_id(client, dataset_id, 1), image_id(client, dataset_id, 2)
    block = {
        "aesthetics": "Italian Baroque, tenebrist",
        "lighting": "one candle, deep shadow",
        "medium": "painting",
        "render": "oil on canvas, warm glazes",
    }
    assert client.put(f"/api/datasets/{dataset_id}/style", json=block).json() == block
    put(client, a, 0, CAPTION)  # the same style: every field inherits
    other = {**CAPTION["style_description"], "lighting": "moonlight"}
    put(client, b, 0, CAPTION | {"style_description": other})
    # Changing the block changes every caption that inherits it, and only those fields.
    client.put(f"/api/datasets/{dataset_id}/style", json=block | {"aesthetics": "Caravaggesque"})
    sa = client.get(f"/api/images/{a}/caption").json()["caption"]["style_description"]
    sb = client.get(f"/api/images/{b}/caption").json()["caption"]["style_description"]
    assert sa["aesthetics"] == sb["aesthetics"] == "Caravaggesque"
    assert sa["lighting"] == "one candle, deep shadow"
    assert sb["lighting"] == "moonlight"
    bad = client.put(f"/api/datasets/{dataset_id}/style", json=block | {"medium": "oil"})
    assert bad.status_code == 422

    # Apply to all: a preview first, then one revision per caption changed, undoable.
    preview = client.post(f"/api/datasets/{dataset_id}/style/apply", json={}).json()["preview"]
    assert [p["image_id"] for p in preview] == [b]
    assert preview[0]["changes"] == [
        {
            "field": "style.lighting",
            "label": "style · lighting",
            "before": "moonlight",
            "after": "one candle, deep shadow",
        }
    ]
    previewed = {str(p["image_id"]): p["revision"] for p in preview}
    done = client.post(f"/api/datasets/{dataset_id}/style/apply", json={"previewed": previewed})
    assert done.json()["changed"] == 1
    sb = client.get(f"/api/images/{b}/caption").json()["caption"]["style_description"]
    assert sb["lighting"] == "one candle, deep shadow"
    undone = client.post(f"/api/datasets/{dataset_id}/batches/{done.json()['batch']}/undo")
    assert undone.json() == {"batch": done.json()["batch"], "changed": 1, "skipped": []}
    sb = client.get(f"/api/images/{b}/caption").json()["caption"]["style_description"]
    assert sb["lighting"] == "moonlight"


def test_find_replace_preview_apply_undo(client: TestClient, dataset_id: int) -> None:
    a, b, c = (image_id(client, dataset_id, s) for s in (1, 2, 3))
    put(client, a, 0, CAPTION)
    put(client, b, 0, CAPTION | {"high_level_description": "A Scholar at night."})
    put(client, c, 0, CAPTION | {"high_level_description": "A cat."})
    body = {"find": "scholar", "replace": "monk", "field": "high_level_description"}
    preview = client.post(f"/api/datasets/{dataset_id}/replace", json=body).json()["preview"]
    assert [p["image_id"] for p in preview] == [a]  # case-sensitive by default
    body["case_sensitive"] = False
    preview = client.post(f"/api/datasets/{dataset_id}/replace", json=body).json()["preview"]
    assert [(p["image_id"], p["changes"][0]["after"]) for p in preview] == [
        (a, "A bearded monk reads by candlelight."),
        (b, "A monk at night."),
    ]
    # b is edited after the preview: applying skips it rather than overwrite the edit.
    put(client, b, 1, CAPTION | {"high_level_description": "A Scholar at dawn."})
    previewed = {str(p["image_id"]): p["revision"] for p in preview}
    done = client.post(
        f"/api/datasets/{dataset_id}/replace", json=body | {"previewed": previewed}
    ).json()
    assert done["changed"] == 1 and done["skipped"] == ["p2.jpg"]
    assert (
        client.get(f"/api/images/{a}/caption").json()["caption"]["high_level_description"]
        == "A bearded monk reads by candlelight."
    )
    client.post(f"/api/datasets/{dataset_id}/batches/{done['batch']}/undo")
    assert (
        client.get(f"/api/images/{a}/caption").json()["caption"]["high_level_description"]
        == CAPTION["high_level_description"]
    )
    # Other scopes and bad input.
    r = client.post(
        f"/api/datasets/{dataset_id}/replace",
        json={"find": "VANITAS", "replace": "MEMENTO", "field": "text"},
    ).json()["preview"]
    assert {c["field"] for p in r for c in p["changes"]} == {"elements.2.text"}
    bad = client.post(f"/api/datasets/{dataset_id}/replace", json={"find": "(", "regex": True})
    assert bad.status_code == 422 and "regular expression" in bad.json()["detail"]
    assert client.post(f"/api/datasets/{dataset_id}/replace", json={"find": ""}).status_code == 422
    assert client.post(f"/api/datasets/{dataset_id}/batches/nope/undo").status_code == 404


def test_palettes_from_pixels(client: TestClient, dataset_id: int) -> None:
    img = PILImage.new("RGB", (400, 200), (200, 30, 30))
    img.paste((20, 40, 220), (200, 0, 400, 200))  # right half blue
    buf = io.BytesIO()
    img.save(buf, "PNG")
    r = client.post(
        f"/api/datasets/{dataset_id}/images",
        files=[("files", ("halves.png", buf.getvalue(), "image/png"))],
    )
    iid = r.json()["imported"][0]["image_id"]
    cap = {
        "compositional_deconstruction": {
            "elements": [
                {"type": "obj", "bbox": [0, 0, 1000, 500], "desc": "red half"},
                {"type": "obj", "bbox": [0, 500, 1000, 1000], "desc": "blue half"},
                {"type": "obj", "desc": "no box"},
            ]
        }
    }
    put(client, iid, 0, cap)
    assert (
        client.post(f"/api/images/{iid}/caption/palettes", json={"revision": 0}).status_code == 409
    )
    got = client.post(f"/api/images/{iid}/caption/palettes", json={"revision": 1}).json()
    assert got["revision"] == 2
    c = got["caption"]
    assert sorted(c["style_description"]["color_palette"]) == ["#1428DC", "#C81E1E"]
    els = c["compositional_deconstruction"]["elements"]
    assert els[0]["color_palette"] == ["#C81E1E"]
    assert els[1]["color_palette"] == ["#1428DC"]
    assert els[2]["color_palette"] == []


def test_concurrent_saves_of_one_revision_one_wins(client: TestClient, dataset_id: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    iid = image_id(client, dataset_id)
    put(client, iid, 0, CAPTION)

    def save(n: int) -> int:
        return put(client, iid, 1, CAPTION | {"high_level_description": f"writer {n}"}).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(save, range(16)))
    assert codes.count(200) == 1 and codes.count(409) == 15
    assert client.get(f"/api/images/{iid}/caption").json()["revision"] == 2


def test_stale_save_with_merge_takes_both_edits_or_lists_the_clash(
    client: TestClient, dataset_id: int
) -> None:
    iid = image_id(client, dataset_id)
    put(client, iid, 0, CAPTION)
    theirs = CAPTION | {"high_level_description": "theirs"}
    assert put(client, iid, 1, theirs).status_code == 200
    elements = CAPTION["compositional_deconstruction"]["elements"]
    mine = CAPTION | {
        "compositional_deconstruction": {
            "background": "a dark study",
            "elements": [elements[0] | {"desc": "the scholar, mine"}, elements[1]],
        }
    }
    # Without `merge` the API still refuses; with it, both edits land in one new revision.
    assert put(client, iid, 1, mine).status_code == 409
    r = put(client, iid, 1, mine, merge=True)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["revision"] == 3
    assert body["merged"] == {
        "with_revision": 2,
        "yours": ["element 1 · description"],
        "theirs": ["high-level description"],
    }
    got = client.get(f"/api/images/{iid}/caption").json()["caption"]
    assert got["high_level_description"] == "theirs"
    assert got["compositional_deconstruction"]["elements"][0]["desc"] == "the scholar, mine"
    assert "id" not in got["compositional_deconstruction"]["elements"][0]
    # The same field changed on both sides: 409 naming it, and nothing saved.
    clash = mine | {"high_level_description": "mine"}
    r = put(client, iid, 1, clash, merge=True)
    assert r.status_code == 409
    body = r.json()
    assert "both changed high-level description" in body["detail"]
    assert body["conflicts"] == [
        {
            "part": "high-level description",
            "base": CAPTION["high_level_description"],
            "yours": "mine",
            "theirs": "theirs",
        }
    ]
    assert body["current"]["revision"] == 3
    assert client.get(f"/api/images/{iid}/caption").json()["revision"] == 3
    # A stale save that says what the newest says already adds nothing, and says so.
    r = put(client, iid, 1, got, merge=True)
    assert r.json()["revision"] == 3 and r.json()["merged"]["with_revision"] == 3
