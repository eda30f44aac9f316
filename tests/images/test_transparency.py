"""Transparency is said at import and by lint, as what the trainer will see there."""

from __future__ import annotations

import io
from pathlib import Path

from bs4 import BeautifulSoup
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from sqlmodel import Session

from app.models import Image
from tests import imagefiles as f
from tests.export.test_export import CAPTION, export

SIZE = (400, 300)


def _png(img: PILImage.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def cut_out() -> bytes:
    """A figure on a clear ground: the left quarter fully clear, the next one half clear."""
    img = f.picture(3, SIZE).convert("RGBA")
    img.paste((0, 0, 0, 0), (0, 0, 100, 300))
    img.paste((200, 40, 40, 128), (100, 0, 200, 300))
    return _png(img)


def import_three(client: TestClient) -> tuple[int, dict[str, dict]]:
    dataset_id = client.post(
        "/api/datasets", json={"name": "Cut-outs", "trigger_word": "cut"}
    ).json()["id"]
    files = [
        ("files", ("cutout.png", cut_out(), "image/png")),
        ("files", ("opaque.png", _png(f.picture(4, SIZE).convert("RGBA")), "image/png")),
        ("files", ("photo.jpg", f.jpeg_bytes(5, SIZE), "image/jpeg")),
    ]
    r = client.post(f"/api/datasets/{dataset_id}/images", files=files)
    assert r.status_code == 200, r.text
    return dataset_id, {o["filename"]: o for o in r.json()["imported"]}


def test_import_flags_transparent_pixels_with_what_the_trainer_sees(client: TestClient) -> None:
    dataset_id, imported = import_three(client)
    cut = imported["cutout.png"]
    assert cut["transparent_share"] == 0.5
    assert cut["transparency"].startswith("50% of its pixels are transparent or partly so")
    assert "flattens them onto white (#FFFFFF)" in cut["transparency"]
    assert "loss mask" in cut["transparency"]
    # An alpha channel that is opaque everywhere is no cut-out; a JPEG has none.
    for name in ("opaque.png", "photo.jpg"):
        assert "transparency" not in imported[name] and "transparent_share" not in imported[name]
    rows = client.get(f"/api/datasets/{dataset_id}/images").json()
    assert {r["filename"]: "transparent" in r["flags"] for r in rows} == {
        "cutout.png": True,
        "opaque.png": False,
        "photo.jpg": False,
    }
    only = client.get(f"/api/datasets/{dataset_id}/images", params={"flag": "transparent"}).json()
    assert [r["filename"] for r in only] == ["cutout.png"]
    grid = BeautifulSoup(client.get(f"/datasets/{dataset_id}").text, "html.parser")
    badges = [b.get_text(strip=True) for b in grid.select(".badge.flag-transparent")]
    assert badges == ["transparent pixels"]


def test_lint_says_what_the_export_does_with_transparency(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id, imported = import_three(client)
    for o in imported.values():
        client.put(f"/api/images/{o['image_id']}/caption", json={"revision": 0, "caption": CAPTION})
    findings = [
        x
        for x in client.get(f"/api/datasets/{dataset_id}/lint").json()
        if x["code"] == "transparent"
    ]
    assert [(x["image"], x["severity"]) for x in findings] == [("cutout.png", "warning")]
    assert findings[0]["message"] == imported["cutout.png"]["transparency"]
    page = BeautifulSoup(client.get(f"/datasets/{dataset_id}/export").text, "html.parser")
    assert any("white (#FFFFFF)" in li.get_text() for li in page.select("[data-lint] li.warning"))
    # What the sentence says is what the export does: clear is white, half clear half white.
    folder = export(client, dataset_id, tmp_path / "flat", force=True).dataset_dir
    with PILImage.open(folder / "001.png") as im:
        assert im.mode == "RGB"
        assert im.getpixel((50, 150)) == (255, 255, 255)
        blend = [round(c * 128 / 255 + 255 * 127 / 255) for c in (200, 40, 40)]
        assert all(abs(a - b) <= 1 for a, b in zip(im.getpixel((150, 150)), blend, strict=True))
    kept = export(client, dataset_id, tmp_path / "kept", force=True, keep_alpha=True).dataset_dir
    with PILImage.open(kept / "001.png") as im:
        assert im.mode == "RGBA" and im.getpixel((50, 150))[3] == 0


def test_lint_names_an_alpha_channel_imported_before_it_was_measured(client: TestClient) -> None:
    dataset_id, imported = import_three(client)
    with Session(client.app.state.db) as session:  # type: ignore[attr-defined]
        for name in ("cutout.png", "opaque.png"):
            img = session.get(Image, imported[name]["image_id"])
            assert img is not None
            img.transparent_share = None  # as the migration leaves an older PNG
            session.add(img)
        session.commit()
    findings = client.get(f"/api/datasets/{dataset_id}/lint").json()
    named = sorted(x["image"] for x in findings if x["code"] == "transparent")
    assert named == ["cutout.png", "opaque.png"]
    assert all("alpha channel" in x["message"] for x in findings if x["code"] == "transparent")


def test_cli_import_says_what_the_trainer_sees_where_transparent(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cutout.png").write_bytes(cut_out())
    f.jpeg(tmp_path / "in" / "photo.jpg", 5, SIZE)
    r = subprocess.run(
        [sys.executable, "-m", "app", "import", str(tmp_path / "in"), "--dataset", "Cut",
         "--create", "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith("transparent")]
    assert len(lines) == 1 and lines[0].startswith("transparent cutout.png: 50% of its pixels")
    assert "white (#FFFFFF)" in lines[0]
