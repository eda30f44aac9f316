"""Bad names and a full disk are answered with a sentence, never a bare 500: a NUL in an
uploaded file's name, export paths the file system cannot hold, and saves, uploads and exports
on a disk with no space left (a real one: a small tmpfs mounted for the test)."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.web.app import create_app
from tests import imagefiles as f
from tests.training.conftest import CAPTION


def raw_upload(name: bytes, data: bytes) -> tuple[bytes, dict[str, str]]:
    """A multipart body with the file name as these bytes (clients escape a NUL; this doesn't)."""
    body = (
        b'--BOUND\r\nContent-Disposition: form-data; name="files"; filename="' + name + b'"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + data + b"\r\n--BOUND--\r\n"
    )
    return body, {"content-type": "multipart/form-data; boundary=BOUND"}


@pytest.mark.parametrize("name", [b"a.jp\x00g", b"a\x00b.jpg", b"\x00.json"])
def test_a_nul_in_an_uploaded_file_s_name_is_refused_with_a_sentence(
    client: TestClient, dataset_id: int, name: bytes
) -> None:
    body, headers = raw_upload(name, f.jpeg_bytes(1))
    for path in (f"/api/datasets/{dataset_id}/images", f"/datasets/{dataset_id}/import"):
        r = client.post(path, content=body, headers=headers)
        assert r.status_code == 422 and "holds a NUL character" in r.text, (path, r.text[:200])
    assert client.get(f"/api/datasets/{dataset_id}/images").json() == []


@pytest.mark.parametrize(
    ("out", "says"),
    [
        ("/tmp/" + "x" * 256, "is 256 bytes long; a name may be at most 255"),
        ("/tmp/" + "/".join(["y" * 200] * 41), "the system takes paths of at most 4095"),
    ],
    ids=["long-name", "8-kb-path"],
)
def test_export_paths_the_file_system_cannot_hold_get_a_sentence(
    client: TestClient, dataset_id: int, out: str, says: str
) -> None:
    r = client.post(f"/api/datasets/{dataset_id}/export", json={"out_dir": out, "force": True})
    assert r.status_code == 422 and says in r.json()["detail"], r.text
    page = client.post(f"/datasets/{dataset_id}/export", data={"out_dir": out, "force": "1"})
    assert page.status_code == 422  # the form's own limit (4,096 characters) may come first


@contextlib.contextmanager
def small_disk(where: Path, size: str = "12m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (root only: skipped elsewhere), unmounted after."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True, text=True,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Writes a file until the disk says it is full (ENOSPC); the file."""
    filler = disk / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    return filler


def test_writes_on_a_full_disk_say_so_and_lose_nothing(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        settings = Settings(data_dir=disk / "data", import_workers=2)
        with TestClient(create_app(settings)) as c:
            ds = c.post("/api/datasets", json={"name": "Full", "trigger_word": "full"}).json()
            files = [("files", (f"{n}.jpg", f.jpeg_bytes(n), "image/jpeg")) for n in (1, 2)]
            imported = c.post(f"/api/datasets/{ds['id']}/images", files=files).json()["imported"]
            ids = [o["image_id"] for o in imported]
            saved = c.put(f"/api/images/{ids[0]}/caption", json={"revision": 0, "caption": CAPTION})
            assert saved.status_code == 200
            filler = fill(disk)
            big = json.loads(json.dumps(CAPTION))
            big["high_level_description"] = "a long description " * 400
            answers = {
                "save": c.put(
                    f"/api/images/{ids[1]}/caption", json={"revision": 0, "caption": big}
                ),
                "upload": c.post(
                    f"/api/datasets/{ds['id']}/images",
                    files=[("files", ("3.jpg", f.jpeg_bytes(3, (1600, 1200)), "image/jpeg"))],
                ),
                "export": c.post(
                    f"/api/datasets/{ds['id']}/export",
                    json={"out_dir": str(disk / "data" / "exports" / "x"), "force": True},
                ),
            }
            for what, r in answers.items():
                assert r.status_code == 507, (what, r.status_code, r.text[:300])
                assert f"The disk holding {(disk / 'data').resolve()} is full" in r.text, what
            # Nothing saved before is lost, and with space again the same writes go through.
            filler.unlink()
            kept = c.get(f"/api/images/{ids[0]}/caption").json()
            assert kept["caption"]["high_level_description"] == CAPTION["high_level_description"]
            again = c.put(f"/api/images/{ids[1]}/caption", json={"revision": 0, "caption": big})
            assert again.status_code == 200, again.text
