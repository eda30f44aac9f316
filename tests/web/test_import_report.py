"""The upload report: refused files first with their reasons, an image too small to train
called unusable, and every report kept in the dataset's import history."""

from __future__ import annotations

from bs4 import BeautifulSoup
from fastapi.testclient import TestClient

from tests import imagefiles as f


def soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def _files() -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        ("files", ("good.jpg", f.jpeg_bytes(1, (1200, 1000)), "image/jpeg")),
        ("files", ("small.jpg", f.jpeg_bytes(2, (200, 260)), "image/jpeg")),
        ("files", ("broken.png", b"<html>not an image</html>", "image/png")),
        ("files", ("orphan.txt", b"a caption without its image", "text/plain")),
    ]


def test_the_upload_report_puts_refused_files_first_and_calls_a_tiny_image_unusable(
    client: TestClient, dataset_id: int
) -> None:
    page = soup(client.post(f"/datasets/{dataset_id}/import", files=_files()).text)
    lines = page.select(".report li")
    kinds = [li["class"][0] for li in lines]
    assert kinds[:2] == ["refused", "refused"] and "refused" not in kinds[2:]
    refused = {li.text.split(":")[0]: li.text for li in lines[:2]}
    assert "no image of the same name" in refused["orphan.txt"]
    assert "refused, " in refused["broken.png"]
    small = next(li.text for li in lines if li.text.startswith("small.jpg"))
    assert "unusable" in small and "smallest training bucket" in small
    assert "low resolution" not in small
    # The API says the same, refused first.
    report = client.post(
        f"/api/datasets/{dataset_id}/images",
        files=[("files", ("tiny2.jpg", f.jpeg_bytes(3, (260, 200)), "image/jpeg"))],
    ).json()
    assert list(report)[0] == "refused"
    (row,) = report["imported"]
    assert (row["unusable"], row["width"], row["height"]) == (True, 260, 200)
    assert report["smallest_bucket"] == 512


def test_the_import_report_stays_in_the_dataset_s_import_history(
    client: TestClient, dataset_id: int
) -> None:
    # One upload sent in two batches (as the page sends them) is one import in the history.
    url = f"/api/datasets/{dataset_id}/images?upload=u1"
    client.post(url, files=_files()[:2])
    client.post(url, files=_files()[2:])
    page = soup(client.get(f"/datasets/{dataset_id}/imports").text)
    (record,) = page.select("[data-import]")
    names = [li.text.split(":")[0] for li in record.select(".report li")]
    assert set(names[:2]) == {"broken.png", "orphan.txt"}
    assert set(names[2:]) == {"good.jpg", "small.jpg"}
    # A later import, from the no-JavaScript form, comes first.
    files = [("files", ("later.jpg", f.jpeg_bytes(4, (900, 900)), "image/jpeg"))]
    form = soup(client.post(f"/datasets/{dataset_id}/import", files=files).text)
    assert form.select_one(f'a[href="/datasets/{dataset_id}/imports"]') is not None
    records = soup(client.get(f"/datasets/{dataset_id}/imports").text).select("[data-import]")
    assert len(records) == 2 and "later.jpg" in records[0].text
    just_one = soup(client.get(f"/datasets/{dataset_id}/imports?upload=u1").text)
    assert len(just_one.select("[data-import]")) == 1
    api = client.get(f"/api/datasets/{dataset_id}/imports").json()
    assert [len(i["imported"]) for i in api] == [1, 2]
    assert client.get("/datasets/999/imports").status_code == 404
