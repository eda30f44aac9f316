"""The grid: search by file name and caption text, sort, excerpts, bulk actions (plain forms),
the upload report's flags, find and replace marks, the favicon."""

from __future__ import annotations

import json
from io import BytesIO

from bs4 import BeautifulSoup
from fastapi.testclient import TestClient
from PIL import Image as Pil

from tests import imagefiles as f


def soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def caption(text: str) -> dict:
    return {
        "high_level_description": text,
        "compositional_deconstruction": {"background": "a dark study", "elements": []},
    }


def upload(client: TestClient, dataset_id: int, specs: list[tuple[str, int, tuple[int, int]]]):  # type: ignore[no-untyped-def]
    files = [("files", (n, f.jpeg_bytes(seed, size), "image/jpeg")) for n, seed, size in specs]
    return client.post(f"/api/datasets/{dataset_id}/images", files=files).json()


def names(html: str) -> list[str]:
    return [t.select_one(".name").text for t in soup(html).select("li.tile")]  # type: ignore[union-attr]


def _three(client: TestClient, dataset_id: int) -> dict[str, int]:
    report = upload(
        client,
        dataset_id,
        [
            ("b_small.jpg", 1, (600, 400)),
            ("C_big.jpg", 2, (1600, 1200)),
            ("a_mid.jpg", 3, (1000, 800)),
        ],
    )
    ids = {o["filename"]: o["image_id"] for o in report["imported"]}
    client.put(
        f"/api/images/{ids['b_small.jpg']}/caption",
        json={"revision": 0, "caption": caption("A monk prays by candlelight.")},
    )
    client.put(
        f"/api/images/{ids['a_mid.jpg']}/caption",
        json={"revision": 0, "caption": caption("A background of dark drapery.")},
    )
    return ids


def test_search_finds_file_names_and_caption_words_not_keys(
    client: TestClient, dataset_id: int
) -> None:
    _three(client, dataset_id)
    url = f"/datasets/{dataset_id}"
    assert names(client.get(url, params={"q": "big"}).text) == ["C_big.jpg"]
    assert names(client.get(url, params={"q": "CANDLE"}).text) == ["b_small.jpg"]
    # "background" is a key of every caption; only the one that says it matches.
    assert names(client.get(url, params={"q": "background"}).text) == ["a_mid.jpg"]
    assert names(client.get(url, params={"q": "%"}).text) == []
    page = soup(client.get(url, params={"q": "monk"}).text)
    assert page.select_one("#grid-q")["value"] == "monk"  # type: ignore[index]
    r = client.get(url, params={"q": "x" * 201})
    assert r.status_code == 422


def test_sort_orders_and_tiles_show_an_excerpt(client: TestClient, dataset_id: int) -> None:
    _three(client, dataset_id)
    url = f"/datasets/{dataset_id}"
    assert names(client.get(url).text) == ["b_small.jpg", "C_big.jpg", "a_mid.jpg"]
    assert names(client.get(url, params={"sort": "name"}).text) == [
        "a_mid.jpg",
        "b_small.jpg",
        "C_big.jpg",
    ]
    assert names(client.get(url, params={"sort": "resolution"}).text) == [
        "C_big.jpg",
        "a_mid.jpg",
        "b_small.jpg",
    ]
    # What still needs a person first.
    assert names(client.get(url, params={"sort": "status"}).text)[0] == "C_big.jpg"
    assert names(client.get(url, params={"sort": "newest"}).text)[-1] == "b_small.jpg"
    assert client.get(url, params={"sort": "size"}).status_code == 422
    page = soup(client.get(url).text)
    excerpts = {
        t.select_one(".name").text: t.select_one("[data-excerpt]")  # type: ignore[union-attr]
        for t in page.select("li.tile")
    }
    assert excerpts["b_small.jpg"].text == "A monk prays by candlelight."  # type: ignore[union-attr]
    assert excerpts["C_big.jpg"] is None
    # A filter link keeps the search and the order.
    page = soup(client.get(url, params={"q": "a", "sort": "name"}).text)
    link = page.select_one("nav.filters a[href*='status=approved']")["href"]  # type: ignore[index]
    assert "q=a" in link and "sort=name" in link  # type: ignore[operator]


def _statuses(client: TestClient, dataset_id: int) -> dict[str, str]:
    images = client.get(f"/api/datasets/{dataset_id}/images").json()
    return {i["filename"]: i["status"] for i in images}


def test_bulk_actions_without_js(client: TestClient, dataset_id: int) -> None:
    ids = _three(client, dataset_id)
    url = f"/datasets/{dataset_id}"
    page = soup(client.get(url).text)
    bulk = page.select_one("form#bulk")
    assert bulk is not None and bulk["action"] == f"/datasets/{dataset_id}/bulk"
    assert len(page.select("input[name=image_id][form=bulk]")) == 3
    chosen = [ids["b_small.jpg"], ids["C_big.jpg"]]
    r = client.post(
        f"{url}/bulk",
        data={"action": "approve", "image_id": chosen, "back": url},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == url
    statuses = _statuses(client, dataset_id)
    assert statuses["b_small.jpg"] == "approved" and statuses["C_big.jpg"] == "none"
    notice = soup(client.get(url).text).select_one("[data-bulk-notice]")
    assert notice is not None
    assert notice.span.text == "1 image approved. 1 without a caption left as it was."  # type: ignore[union-attr]
    assert soup(client.get(url).text).select_one("[data-bulk-notice]") is None  # said once
    # Every image the search matches, on every page.
    r = client.post(
        f"{url}/bulk", data={"action": "needs_review", "all_matching": "true", "q": "drapery"}
    )
    assert r.status_code == 200
    got = _statuses(client, dataset_id)
    assert got["a_mid.jpg"] == "needs_review" and got["b_small.jpg"] == "approved"
    client.post(f"{url}/bulk", data={"action": "trash", "image_id": [ids["C_big.jpg"]]})
    assert names(client.get(url).text) == ["b_small.jpg", "a_mid.jpg"]
    client.post(f"{url}/bulk", data={"action": "redraft", "image_id": [ids["a_mid.jpg"]]})
    jobs = client.get(f"/api/datasets/{dataset_id}/draft-jobs").json()
    assert len(jobs) == 1 and jobs[0]["total"] == 1
    nothing = client.post(f"{url}/bulk", data={"action": "approve"})
    assert nothing.status_code == 422 and "Select at least one image" in nothing.text
    other = client.post("/api/datasets", json={"name": "Other"}).json()["id"]
    wrong = client.post(
        f"/datasets/{other}/bulk", data={"action": "approve", "image_id": [ids["a_mid.jpg"]]}
    )
    assert wrong.status_code == 404 and "is not in the dataset" in wrong.text
    bad = client.post(f"{url}/bulk", data={"action": "burn", "image_id": [ids["a_mid.jpg"]]})
    assert bad.status_code == 422 and "Unknown action" in bad.text


def test_the_upload_report_names_flags(client: TestClient, dataset_id: int) -> None:
    report = upload(client, dataset_id, [("small.jpg", 4, (500, 400))])
    (row,) = report["imported"]
    assert row["low_resolution"] is True and row["near_duplicate_of"] == []
    files = [("files", ("mid.jpg", f.jpeg_bytes(5, (700, 500)), "image/jpeg"))]
    page = soup(client.post(f"/datasets/{dataset_id}/import", files=files).text)
    line = page.select_one(".report li.imported")
    assert line is not None and "low resolution (700×500: trains below 1024 px)" in line.text


def test_the_upload_report_names_ambiguous_boxes_and_near_duplicates(
    client: TestClient, dataset_id: int
) -> None:
    boxes = {
        "compositional_deconstruction": {
            "elements": [{"type": "obj", "bbox": [100, 200, 300, 400], "desc": "a skull"}]
        }
    }
    image = f.jpeg_bytes(7, (1000, 800))
    files = [
        ("files", ("a.jpg", image, "image/jpeg")),
        ("files", ("a.json", json.dumps(boxes).encode(), "application/json")),
    ]
    page = soup(client.post(f"/datasets/{dataset_id}/import", files=files).text)
    line = page.select_one(".report li.imported")
    assert line is not None and "boxes could be 0..1000 or pixels" in line.text
    # The same painting recompressed: named as the near-duplicate of the first.
    copy = BytesIO()
    Pil.open(BytesIO(image)).resize((900, 720)).save(copy, "JPEG", quality=70)
    report = upload_bytes(client, dataset_id, [("b.jpg", copy.getvalue())])
    assert report["imported"][0]["near_duplicate_of"] == ["a.jpg"]


def upload_bytes(client: TestClient, dataset_id: int, files: list[tuple[str, bytes]]) -> dict:
    parts = [("files", (n, b, "image/jpeg")) for n, b in files]
    return client.post(f"/api/datasets/{dataset_id}/images", files=parts).json()


def test_replace_preview_marks_the_match_and_an_invalid_regex_says_so(
    client: TestClient, dataset_id: int
) -> None:
    _three(client, dataset_id)
    url = f"/datasets/{dataset_id}/replace/preview"
    hx = {"HX-Request": "true"}
    page = soup(client.post(url, data={"find": "candle", "replace": "oil lamp"}, headers=hx).text)
    assert [m.text for m in page.select("td.before mark")] == ["candle"]
    assert [m.text for m in page.select("td.after mark")] == ["oil lamp"]
    assert page.select("del") == []
    data = {"find": r"(\w+) prays", "replace": r"\1 kneels", "regex": "true"}
    page = soup(client.post(url, data=data, headers=hx).text)
    assert [m.text for m in page.select("td.after mark")] == ["monk kneels"]
    r = client.post(url, data={"find": "(", "regex": "true"}, headers=hx)
    result = soup(r.text).select_one("section#result")
    assert r.status_code == 422 and result is not None
    assert "regular expression" in result.select_one("[role=alert]").text  # type: ignore[union-attr]
    assert result.select("[data-changes]") == []


def test_favicon_is_served(client: TestClient) -> None:
    r = client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"] == "image/x-icon"
    assert r.content[:4] == b"\0\0\1\0"
