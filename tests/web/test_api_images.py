"""Uploading, listing, serving and deleting images over the JSON API."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi.testclient import TestClient

from app.config import Settings
from tests import imagefiles as f


def upload(client: TestClient, dataset_id: int, files: list[tuple[str, bytes]]):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/datasets/{dataset_id}/images",
        files=[("files", (name, data, "application/octet-stream")) for name, data in files],
    )


def test_upload_many_reports_each_file(client: TestClient, dataset_id: int, tmp_path: Path) -> None:
    a = f.jpeg_bytes(1)
    r = upload(
        client,
        dataset_id,
        [
            ("a.jpg", a),
            ("a.json", b'{"high_level_description": "x"}'),
            ("b.jpg", f.jpeg_bytes(2, (1400, 1100))),
            ("again.jpg", a),
            ("evil.png", b"<!DOCTYPE html><script>alert(1)</script>"),
            ("orphan.txt", b"caption without image"),
            ("empty.webp", b""),
        ],
    )
    assert r.status_code == 200
    body = r.json()
    assert [(o["filename"], o.get("sidecar")) for o in body["imported"]] == [
        ("a.jpg", "json"),
        ("b.jpg", None),
    ]
    assert body["duplicates"][0]["filename"] == "again.jpg"
    assert body["duplicates"][0]["duplicate_of"] == body["imported"][0]["image_id"]
    refused = {o["filename"]: o["reason"] for o in body["refused"]}
    assert refused == {
        "evil.png": "it is an HTML page, not an image",
        "orphan.txt": "a caption file with no image of the same name",
        "empty.webp": "the file is empty (0 bytes)",
    }


def test_upload_over_size_limit_stops_at_that_file_and_leaves_nothing(tmp_path: Path) -> None:
    from app.web.app import create_app

    settings = Settings(data_dir=tmp_path / "d", max_file_mb=1)
    with TestClient(create_app(settings)) as client:
        ds = client.post("/api/datasets", json={"name": "x"}).json()["id"]
        big = f.save(f.picture(1, (2000, 2000)).convert("RGB"), tmp_path / "big.bmp", "BMP")
        # A short file first: it is read and written, then the big one stops the upload.
        r = upload(client, ds, [("ok.jpg", f.jpeg_bytes(3)), ("big.bmp", big.read_bytes())])
        assert r.status_code == 413
        assert "big.bmp is over the 1 MB limit (ATELIER_MAX_FILE_MB)" in r.json()["detail"]
        assert client.get(f"/api/datasets/{ds}/images").json() == []
        # Nothing half-written stays: no upload folder in tmp, nothing in the store.
        assert list(settings.tmp_dir.glob("upload-*")) == []
        assert [p for p in settings.store_dir.rglob("*") if p.is_file()] == []
        ok = upload(client, ds, [("ok.jpg", f.jpeg_bytes(3))])
        assert [o["filename"] for o in ok.json()["imported"]] == ["ok.jpg"]


def _post_raw(
    url: str, path: str, headers: dict[str, str], chunks: int, chunk: bytes
) -> tuple[str, int]:
    """Sends a request's head, then body chunks until the server answers; the answer's first
    line and how many chunks went before it."""
    import select
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
        head = f"POST {path} HTTP/1.1\r\nhost: {where.netloc}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        sock.sendall(head.encode() + b"\r\n")
        sent = 0
        for _ in range(chunks):
            if select.select([sock], [], [], 0.05)[0]:
                break  # the server has answered: stop sending, as a client would
            try:
                sock.sendall(chunk)
            except OSError:
                break
            sent += 1
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer.split(b"\r\n", 1)[0].decode(), sent


def test_upload_over_the_request_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    import httpx

    from tests.browser.conftest import serving

    settings = Settings(data_dir=tmp_path / "d", max_upload_mb=1)
    with serving(settings) as url:
        ds = httpx.post(f"{url}/api/datasets", json={"name": "x"}).json()["id"]
        multipart = {"content-type": "multipart/form-data; boundary=b0undary"}
        # It says 5 GB: answered at once, before its body is read.
        status, sent = _post_raw(
            url,
            f"/api/datasets/{ds}/images",
            multipart | {"content-length": str(5 * 2**30)},
            64,
            b"x" * 65536,
        )
        assert status.startswith("HTTP/1.1 413") and sent < 64
        # Chunked, with no length: cut off as soon as it passes 1 MB (16 chunks of 64 KB).
        part = b"--b0undary\r\ncontent-disposition: form-data; name=files; filename=a.png\r\n\r\n"
        chunk = b"x" * 65536
        status, sent = _post_raw(
            url,
            f"/api/datasets/{ds}/images",
            multipart | {"transfer-encoding": "chunked"},
            200,
            b"%x\r\n%s\r\n" % (len(part), part)
            + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(1)),
        )
        assert status.startswith("HTTP/1.1 413") and sent < 40
        assert list(settings.tmp_dir.glob("upload-*")) == []
        assert [p for p in settings.store_dir.rglob("*") if p.is_file()] == []


def test_upload_that_is_not_multipart_is_refused_with_a_sentence(
    client: TestClient, dataset_id: int
) -> None:
    r = client.post(f"/api/datasets/{dataset_id}/images", content=b"not a form")
    assert r.status_code == 422 and "multipart/form-data" in r.json()["detail"]
    r = client.post(
        f"/api/datasets/{dataset_id}/images",
        content=b"--x\r\ncontent-disposition: form-data; name=files; filename=a.png\r\n\r\nab",
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert r.status_code in (200, 422), r.text
    r = client.post(
        f"/api/datasets/{dataset_id}/images",
        files=[("other", ("a.jpg", f.jpeg_bytes(1), "image/jpeg"))],
    )
    assert r.status_code == 422 and "'files'" in r.json()["detail"]


def test_upload_client_filename_cannot_escape(
    client: TestClient, dataset_id: int, settings: Settings
) -> None:
    r = upload(client, dataset_id, [("../../../../etc/x.jpg", f.jpeg_bytes(4))])
    assert r.json()["imported"][0]["filename"] == "x.jpg"
    assert not (settings.data_dir.parent / "etc").exists()


def test_list_images_fields_flags_and_paging(client: TestClient, dataset_id: int) -> None:
    files = [
        (f"{i}.jpg", f.jpeg_bytes(i, (1200, 1100) if i % 2 else (1300, 700))) for i in range(5)
    ]
    upload(client, dataset_id, files)
    r = client.get(f"/api/datasets/{dataset_id}/images")
    assert r.headers["x-total-count"] == "5"
    first = r.json()[0]
    assert set(first) >= {"id", "filename", "width", "height", "sha256", "flags", "status"}
    assert (first["filename"], first["width"], first["height"]) == ("0.jpg", 1300, 700)
    assert first["sha256"] == hashlib.sha256(files[0][1]).hexdigest()
    assert first["flags"] == ["low_resolution"] and first["status"] == "none"
    low = client.get(f"/api/datasets/{dataset_id}/images", params={"flag": "low_resolution"})
    assert [i["filename"] for i in low.json()] == ["0.jpg", "2.jpg", "4.jpg"]
    page = client.get(f"/api/datasets/{dataset_id}/images", params={"offset": 3, "limit": 10})
    assert [i["filename"] for i in page.json()] == ["3.jpg", "4.jpg"]
    assert (
        client.get(f"/api/datasets/{dataset_id}/images", params={"flag": "nope"}).status_code == 422
    )
    assert (
        client.get(f"/api/datasets/{dataset_id}/images", params={"status": "approved"}).json() == []
    )


def test_get_file_returns_original_bytes(client: TestClient, dataset_id: int) -> None:
    data = f.jpeg_bytes(9)
    image_id = upload(client, dataset_id, [("p.jpg", data)]).json()["imported"][0]["image_id"]
    r = client.get(f"/api/images/{image_id}/file")
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "image/jpeg"
    thumb = client.get(f"/api/images/{image_id}/thumb")
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"


def test_thumb_rebuilt_when_cache_lost(
    client: TestClient, dataset_id: int, settings: Settings
) -> None:
    image = upload(client, dataset_id, [("p.jpg", f.jpeg_bytes(9))]).json()["imported"][0]
    for p in settings.thumbs_dir.rglob("*.jpg"):
        p.unlink()
    assert client.get(f"/api/images/{image['image_id']}/thumb").status_code == 200


def test_deleting_for_good_removes_unshared_bytes(
    client: TestClient, dataset_id: int, settings: Settings
) -> None:
    data = f.jpeg_bytes(5)
    other = client.post("/api/datasets", json={"name": "Other"}).json()["id"]
    mine = upload(client, dataset_id, [("p.jpg", data)]).json()["imported"][0]
    theirs = upload(client, other, [("q.jpg", data)]).json()["imported"][0]
    blob = settings.store_dir / mine["sha256"][:2] / mine["sha256"]
    # DELETE moves to the trash: the bytes stay until the trash is emptied.
    assert client.delete(f"/api/images/{mine['image_id']}").status_code == 204
    assert client.delete(f"/api/images/{theirs['image_id']}").status_code == 204
    assert blob.exists()
    client.post(f"/api/datasets/{dataset_id}/trash/empty")
    assert blob.exists(), "bytes still used by the other dataset were deleted"
    client.post(f"/api/datasets/{other}/trash/empty")
    assert not blob.exists()
    assert client.get(f"/api/images/{mine['image_id']}/file").status_code == 404


def test_near_duplicates_listed_and_resolved(
    client: TestClient, dataset_id: int, tmp_path: Path
) -> None:
    a = f.jpeg(tmp_path / "a.jpg", 21)
    b = f.near_copy(a, tmp_path / "b.jpg")
    upload(client, dataset_id, [("a.jpg", a.read_bytes()), ("b.jpg", b.read_bytes())])
    (pair,) = client.get(f"/api/datasets/{dataset_id}/near-duplicates").json()
    assert (pair["image_a"]["filename"], pair["image_b"]["filename"]) == ("a.jpg", "b.jpg")
    r = client.post(f"/api/near-duplicates/{pair['id']}/resolve", json={"keep": "b"})
    assert r.status_code == 204
    assert [i["filename"] for i in client.get(f"/api/datasets/{dataset_id}/images").json()] == [
        "b.jpg"
    ]
    bad = client.post(f"/api/near-duplicates/{pair['id']}/resolve", json={"keep": "c"})
    assert bad.status_code in (404, 422)


def test_openapi_documents_the_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/api/datasets",
        "/api/datasets/{dataset_id}/images",
        "/api/images/{image_id}/file",
        "/api/images/{image_id}",
    } <= set(paths)
    assert client.get("/docs").status_code == 200
