"""Lint's palette warning and its offer: fill every empty palette from the pixels in one
undoable batch (API, page without JavaScript, CLI)."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from typing import Any

from bs4 import BeautifulSoup
from fastapi.testclient import TestClient

from tests.export.test_export import CAPTION, png_bytes

RED = (200, 30, 30)


def red_on_blue() -> bytes:
    """A blue picture with a red square: the box over the square must come out red."""
    import io

    from PIL import Image

    img = Image.new("RGB", (600, 400), (20, 40, 190))
    img.paste(RED, (100, 30, 380, 290))  # around the first box: y 100..700, x 200..600 of 1000
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def caption(palette: list[str] | None = None) -> dict[str, Any]:
    cap = copy.deepcopy(CAPTION)
    cap["style_description"]["color_palette"] = palette or []
    return cap


def palette_dataset(client: TestClient) -> tuple[int, list[int]]:
    """Three captions with no palette (the last holds one element palette), one with both."""
    dataset_id = client.post(
        "/api/datasets", json={"name": "Palettes", "trigger_word": "pl"}
    ).json()["id"]
    files = [("files", ("red.png", red_on_blue(), "image/png"))] + [
        ("files", (f"{n}.png", png_bytes(n, (500, 400)), "image/png")) for n in (2, 3, 4)
    ]
    ids = [
        o["image_id"]
        for o in client.post(f"/api/datasets/{dataset_id}/images", files=files).json()["imported"]
    ]
    caps = [caption(), caption(), caption(), caption(["#112233"])]
    caps[2]["compositional_deconstruction"]["elements"][1]["color_palette"] = ["#ABCDEF"]
    for iid, cap in zip(ids, caps, strict=True):
        r = client.put(f"/api/images/{iid}/caption", json={"revision": 0, "caption": cap})
        assert r.status_code == 200, r.text
    return dataset_id, ids


def palettes_of(client: TestClient, image_id: int) -> tuple[list[str], list[list[str]]]:
    cap = client.get(f"/api/images/{image_id}/caption").json()["caption"]
    elements = cap["compositional_deconstruction"]["elements"]
    return cap["style_description"].get("color_palette", []), [
        e.get("color_palette", []) for e in elements
    ]


def no_palette(client: TestClient, dataset_id: int) -> list[dict]:
    return [
        x
        for x in client.get(f"/api/datasets/{dataset_id}/lint").json()
        if x["code"] == "no_palette"
    ]


def test_lint_warns_of_captions_without_a_palette(client: TestClient) -> None:
    dataset_id, _ = palette_dataset(client)
    (finding,) = no_palette(client, dataset_id)
    assert finding["severity"] == "warning" and finding["image"] is None
    assert finding["message"].startswith("3 of 4 captions have no palette")
    page = BeautifulSoup(client.get(f"/datasets/{dataset_id}/export").text, "html.parser")
    (item,) = [li for li in page.select("[data-lint] li.warning") if "no_palette" in li.get_text()]
    form = item.select_one("[data-palette-fill] form")
    assert form is not None and form["action"] == f"/datasets/{dataset_id}/palettes/fill"
    assert form["method"] == "post"


def test_fill_palettes_api_previews_applies_and_undoes(client: TestClient) -> None:
    dataset_id, ids = palette_dataset(client)
    preview = client.post(f"/api/datasets/{dataset_id}/palettes/fill", json={}).json()["preview"]
    assert [p["image_id"] for p in preview] == ids[:3]
    previewed = {str(p["image_id"]): p["revision"] for p in preview}
    applied = client.post(
        f"/api/datasets/{dataset_id}/palettes/fill", json={"previewed": previewed}
    ).json()
    assert applied["changed"] == 3 and applied["skipped"] == [] and applied["batch"]
    image, elements = palettes_of(client, ids[0])
    assert image and all(re.fullmatch(r"#[0-9A-F]{6}", c) for c in image)
    assert elements[0][0] == "#C81E1E"  # the box over the red square: red first
    # Palettes a caption already held stay; the empty ones beside them are filled.
    image, elements = palettes_of(client, ids[2])
    assert image and elements[1] == ["#ABCDEF"] and elements[0]
    assert palettes_of(client, ids[3]) == (["#112233"], [[], []])  # it had one: untouched
    assert no_palette(client, dataset_id) == []
    # One step back: every caption as it was.
    undone = client.post(f"/api/datasets/{dataset_id}/batches/{applied['batch']}/undo").json()
    assert undone["changed"] == 3
    assert palettes_of(client, ids[0]) == ([], [[], []])
    assert palettes_of(client, ids[2]) == ([], [[], ["#ABCDEF"]])
    assert no_palette(client, dataset_id)[0]["message"].startswith("3 of 4")


def test_fill_palettes_skips_a_caption_edited_since_the_preview(client: TestClient) -> None:
    dataset_id, ids = palette_dataset(client)
    previewed = {str(i): 1 for i in ids[:3]}
    edited = caption()
    edited["high_level_description"] = "Edited meanwhile."
    r = client.put(f"/api/images/{ids[1]}/caption", json={"revision": 1, "caption": edited})
    assert r.status_code == 200, r.text
    applied = client.post(
        f"/api/datasets/{dataset_id}/palettes/fill", json={"previewed": previewed}
    ).json()
    assert applied["changed"] == 2 and applied["skipped"] == ["2.png"]


def test_fill_palettes_from_the_page_without_javascript(client: TestClient) -> None:
    dataset_id, ids = palette_dataset(client)
    r = client.post(
        f"/datasets/{dataset_id}/palettes/fill", data={"back": f"/datasets/{dataset_id}/export"}
    )
    assert r.status_code == 200
    page = BeautifulSoup(r.text, "html.parser")
    assert "Filled the palettes of 3 captions" in page.select_one("[data-palette-fill]").get_text()
    undo = page.select_one("[data-palette-fill] form")
    assert undo is not None and undo["action"].endswith("/undo")
    assert palettes_of(client, ids[1])[0]
    r = client.post(undo["action"], data={"back": undo.select_one("input[name=back]")["value"]})
    assert r.status_code == 200 and "Undone: 3 captions" in r.text
    assert palettes_of(client, ids[1])[0] == []


def test_fill_palettes_cli(client: TestClient) -> None:
    dataset_id, ids = palette_dataset(client)
    data_dir = str(client.app.state.settings.data_dir)  # type: ignore[attr-defined]
    run = [sys.executable, "-m", "app", "palettes", "--dataset", "Palettes", "--data-dir", data_dir]
    r = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Filled the palettes of 3 captions" in r.stdout
    batch = re.search(r"--undo (\w+)", r.stdout)
    assert batch is not None and palettes_of(client, ids[0])[0]
    r = subprocess.run(
        [*run, "--undo", batch.group(1)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert palettes_of(client, ids[0])[0] == []
    r = subprocess.run([*run[:5], "Nope", *run[6:]], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Nope" in r.stderr and "Traceback" not in r.stderr
