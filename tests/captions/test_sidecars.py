"""Caption files imported beside images: read, declared or ambiguous box formats, unreadable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from tests import imagefiles as f

GUIDE = Path(__file__).parent / "guide_001.json"


def atelier(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_guide_example_imported_as_pixels_comes_back_official(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    f.jpeg(folder / "001.jpg", 1, (1200, 1000))
    shutil.copy(GUIDE, folder / "001.json")
    data = tmp_path / "data"
    r = atelier(
        data, "import", str(folder), "--dataset", "Baroque", "--create", "--bbox-format", "pixel"
    )
    assert r.returncode == 0, r.stderr
    assert "1 imported (1 with a caption file)" in r.stdout

    from app.config import Settings
    from app.web.app import create_app

    app = create_app(Settings(data_dir=data, _env_file=None))  # type: ignore[call-arg]
    with TestClient(app) as client:
        got = client.get("/api/images/1/caption").json()
    app.state.db.dispose()
    cap = got["caption"]
    guide = json.loads(GUIDE.read_text())
    # Each pixel [x1, y1, x2, y2] of the 1200x1000 image lands at [y_min, x_min, y_max, x_max]
    # in thousandths of the image.
    for mine, theirs in zip(
        cap["compositional_deconstruction"]["elements"],
        guide["compositional_deconstruction"]["elements"],
        strict=True,
    ):
        x1, y1, x2, y2 = theirs["bbox"]
        assert mine["bbox"] == [round(y1), round(x1 / 1.2), round(y2), round(x2 / 1.2)]
        assert mine["desc"] == theirs["desc"]
    assert cap["compositional_deconstruction"]["elements"][0]["bbox"] == [90, 150, 720, 633]
    style = cap["style_description"]
    assert style["medium"] == "painting"
    assert style["art_style"].startswith("Oil on canvas")
    assert "photo" not in style
    assert list(cap) == [
        "high_level_description",
        "style_description",
        "compositional_deconstruction",
    ]
    # Reading made changes (medium, photo -> art_style): the user should look.
    assert got["status"] == "needs_review"
    assert got["author"] == "sidecar"


def upload(client: TestClient, dataset_id: int, files: list[tuple[str, bytes]]) -> dict:
    r = client.post(
        f"/api/datasets/{dataset_id}/images",
        files=[("files", (n, d, "application/octet-stream")) for n, d in files],
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_ambiguous_boxes_flagged_until_chosen(client: TestClient, dataset_id: int) -> None:
    caption = {
        "compositional_deconstruction": {
            "elements": [
                {"type": "obj", "bbox": [100, 200, 300, 400], "desc": "moved later"},
                {"type": "obj", "bbox": [500, 500, 600, 700], "desc": "left alone"},
            ]
        }
    }
    report = upload(
        client,
        dataset_id,
        [("a.jpg", f.jpeg_bytes(1, (1000, 800))), ("a.json", json.dumps(caption).encode())],
    )
    imported = report["imported"][0]
    assert imported["ambiguous_boxes"] is True and imported["caption"] == "read"  # said once
    iid = report["imported"][0]["image_id"]
    listed = client.get(f"/api/datasets/{dataset_id}/images?flag=ambiguous_boxes").json()
    assert [i["id"] for i in listed] == [iid]
    # The user moves the first box before choosing: that box is kept as moved.
    got = client.get(f"/api/images/{iid}/caption").json()
    edited = got["caption"]
    edited["compositional_deconstruction"]["elements"][0]["bbox"] = [10, 10, 20, 20]
    client.put(f"/api/images/{iid}/caption", json={"revision": 1, "caption": edited})
    r = client.post(f"/api/datasets/{dataset_id}/box-format", json={"format": "pixel"})
    assert r.json() == {"images": 1, "captions_changed": 1}
    els = client.get(f"/api/images/{iid}/caption").json()["caption"][
        "compositional_deconstruction"
    ]["elements"]
    assert els[0]["bbox"] == [10, 10, 20, 20]
    # pixels [x1=500, y1=500, x2=600, y2=700] of 1000x800 -> [625, 500, 875, 600]
    assert els[1]["bbox"] == [625, 500, 875, 600]
    assert client.get(f"/api/datasets/{dataset_id}/images?flag=ambiguous_boxes").json() == []
    again = client.post(f"/api/datasets/{dataset_id}/box-format", json={"format": "pixel"})
    assert again.status_code == 422


def test_unreadable_caption_kept_raw_and_flagged(client: TestClient, dataset_id: int) -> None:
    raw = b'{"compositional_deconstruction": {"elements": [oops]}}'
    report = upload(client, dataset_id, [("b.jpg", f.jpeg_bytes(2)), ("b.json", raw)])
    assert report["imported"][0]["caption"].startswith("kept raw, not read: it is not valid JSON")
    iid = report["imported"][0]["image_id"]
    image = client.get(f"/api/images/{iid}").json()
    assert "unreadable_caption" in image["flags"]
    assert image["caption_error"].startswith("it is not valid JSON")
    assert client.get(f"/api/images/{iid}/caption").json()["revision"] == 0
    page = client.get(f"/images/{iid}")
    assert raw.decode() in page.text.replace("&#34;", '"').replace("&quot;", '"')


def test_txt_sidecar_becomes_the_description(client: TestClient, dataset_id: int) -> None:
    report = upload(client, dataset_id, [("c.jpg", f.jpeg_bytes(3)), ("c.txt", b"a fox in snow\n")])
    iid = report["imported"][0]["image_id"]
    got = client.get(f"/api/images/{iid}/caption").json()
    assert got["caption"]["high_level_description"] == "a fox in snow"
    assert got["status"] == "draft"
