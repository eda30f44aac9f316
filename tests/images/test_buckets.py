"""The trainer's buckets: area, not short side; sides in 16s; resized to cover, centre-cropped.

The sizes below are what AI-Toolkit's own setup_buckets gives (27a03a9, run by hand on each
size; docs/trainer.md section 4), written here as facts.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from bs4 import BeautifulSoup
from fastapi.testclient import TestClient

from app.captions.boxes import Box
from app.captions.schema import Caption, Composition, Element
from app.export import profiles
from app.images import buckets
from tests import imagefiles

# (width, height, resolution) -> bucket, resized image, crop's top-left corner
TRAINER = [
    ((1200, 1000, 1024), (1120, 928), (1120, 934), (0, 3)),
    ((1200, 1000, 768), (832, 704), (845, 704), (6, 0)),
    ((1200, 1000, 512), (560, 464), (560, 467), (0, 1)),
    ((1024, 1024, 1024), (1024, 1024), (1024, 1024), (0, 0)),
    ((1920, 1080, 1024), (1360, 768), (1366, 768), (3, 0)),
    ((1080, 1920, 1024), (768, 1360), (768, 1366), (0, 3)),
    ((4000, 3000, 1024), (1168, 896), (1195, 897), (13, 0)),
    ((3000, 1000, 512), (896, 288), (897, 299), (0, 5)),
    ((4000, 300, 1024), (3744, 272), (3744, 281), (0, 4)),
    ((800, 600, 1024), (800, 592), (800, 600), (0, 4)),
    # A square image below the resolution: the closest area is a 496x512 bucket, so the
    # trainer enlarges it a little and crops its sides.
    ((500, 500, 1024), (496, 512), (512, 512), (8, 0)),
]


@pytest.mark.parametrize(("size", "bucket", "scaled", "crop"), TRAINER)
def test_the_bucket_resize_and_crop_are_the_trainers(
    size: tuple[int, int, int],
    bucket: tuple[int, int],
    scaled: tuple[int, int],
    crop: tuple[int, int],
) -> None:
    w, h, res = size
    f = buckets.fit(w, h, resolution=res)
    assert (f.bucket_width, f.bucket_height) == bucket
    assert buckets.bucket_size(w, h, resolution=res) == bucket
    assert (f.scaled_width, f.scaled_height) == scaled
    assert (f.crop_x, f.crop_y) == crop
    assert f.bucket_width % 16 == 0 and f.bucket_height % 16 == 0
    assert f.bucket_width * f.bucket_height <= res * res


def test_1200x1000_is_not_low_resolution_at_1024_it_is_shrunk() -> None:
    f = buckets.fit(1200, 1000, resolution=1024)
    assert (f.bucket_width, f.bucket_height) == (1120, 928)
    assert not f.upscaled
    assert not buckets.is_low_resolution(1200, 1000, resolution=1024)
    # The short-side rule flagged it; a long thin image with enough area is not low either.
    assert not buckets.is_low_resolution(4000, 300, resolution=1024)
    assert buckets.is_low_resolution(1000, 1000, resolution=1024)
    assert buckets.is_low_resolution(2000, 500, resolution=1024)
    assert not buckets.is_low_resolution(1024, 1024, resolution=1024)


@pytest.mark.parametrize(("w", "h"), [(800, 600), (640, 960), (1000, 1000), (300, 1200)])
def test_an_image_smaller_than_resolution_squared_keeps_its_area(w: int, h: int) -> None:
    f = buckets.fit(w, h, resolution=1024)
    assert buckets.is_low_resolution(w, h, resolution=1024)
    # Rounded to 16s, not grown to the resolution: within a 16 px band of either side.
    assert abs(f.bucket_width * f.bucket_height - w * h) <= 16 * (w + h)
    assert f.bucket_width * f.bucket_height < 1024 * 1024


def test_the_aspect_survives_the_bucket() -> None:
    for w, h in [(1920, 1080), (1080, 1920), (4000, 3000), (3000, 4000), (1000, 3000)]:
        f = buckets.fit(w, h, resolution=1024)
        assert f.bucket_width / f.bucket_height == pytest.approx(w / h, rel=0.03)
        # Portrait and landscape of one aspect land in transposed buckets.
        g = buckets.fit(h, w, resolution=1024)
        assert (g.bucket_width, g.bucket_height) == (f.bucket_height, f.bucket_width)


def test_the_crop_window_is_centred_in_the_image() -> None:
    window = buckets.fit(1200, 1000, resolution=1024).window
    assert window.x0 == 0 and window.x1 == 1
    assert window.y0 == pytest.approx(3 / 934)
    assert window.y1 == pytest.approx(931 / 934)
    wide = buckets.fit(3000, 1000, resolution=512).window
    assert wide.y0 == pytest.approx(1 - wide.y1, abs=1 / 299)


def test_boxes_at_the_cut_edges_lose_area_and_boxes_inside_none() -> None:
    f = buckets.fit(3000, 1000, resolution=512)  # 5 of 299 rows cut top and bottom each
    window = f.window
    assert f.lost_share(Box(0.2, 0.2, 0.8, 0.8)) == 0
    # A strip along the top edge, a thirtieth of the height: the crop takes half of it.
    strip = Box(0.1, 0.0, 0.9, 1 / 30)
    assert f.lost_share(strip) == pytest.approx(window.y0 * 30)
    assert f.lost_share(strip) > 0.45
    # A box of the whole image loses exactly what the crop cuts.
    whole = Box(0.0, 0.0, 1.0, 1.0)
    kept = (window.x1 - window.x0) * (window.y1 - window.y0)
    assert f.lost_share(whole) == pytest.approx(1 - kept)
    assert f.lost_share(Box(0.5, 0.5, 0.5, 0.7)) == 0  # no area, nothing to lose


def test_cropped_boxes_names_each_element_at_its_worst_resolution() -> None:
    caption = Caption(
        composition=Composition(
            background="a tavern wall",
            elements=[
                Element(box=Box(0.3, 0.3, 0.7, 0.7), desc="a card player"),
                Element(box=Box(0.0, 0.0, 0.5, 0.012), desc="a lamp's chain at the top edge"),
                Element(desc="smoke everywhere"),
                Element(box=Box(0.0, 0.0, 1.0, 1.0), desc="the whole scene"),
            ],
        )
    )
    found = buckets.cropped_boxes(caption, width=3000, height=1000, resolutions=[512, 1024])
    assert [(c.element, c.resolution) for c in found] == [(2, 512)]
    assert found[0].lost > 0.9
    # At 1024 alone the crop (8 columns each side of 1776) leaves that strip whole.
    assert buckets.cropped_boxes(caption, width=3000, height=1000, resolutions=[1024]) == []


def test_profiles_name_the_resolutions_they_train_at() -> None:
    assert profiles.get_profile("12gb").resolutions(1024) == [768]
    assert profiles.get_profile("24gb").resolutions(1024) == [1024]
    assert profiles.get_profile("48gb").resolutions(1024) == [512, 768, 1024]
    assert profiles.get_profile("24gb").resolutions(896) == [896]


def png(seed: int, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    imagefiles.picture(seed, size).save(buf, "PNG")
    return buf.getvalue()


def caption_with_boxes(*boxes: list[int]) -> dict[str, Any]:
    return {
        "style_description": {
            "aesthetics": "Italian Baroque",
            "lighting": "one candle",
            "medium": "painting",
            "art_style": "oil on canvas",
        },
        "compositional_deconstruction": {
            "background": "a dark tavern",
            "elements": [
                {"type": "obj", "bbox": b, "desc": f"thing {n}", "color_palette": []}
                for n, b in enumerate(boxes, 1)
            ],
        },
    }


@pytest.fixture
def sized_dataset(client: TestClient) -> int:
    """1200x1000 (shrunk at 1024, not low), 1000x900 (low at 1024), a 3:1 panorama whose first
    box runs along the top edge, 4% of the height, which the crop cuts at 512 and 768."""
    dataset_id = client.post("/api/datasets", json={"name": "Sizes", "resolution": 1024}).json()[
        "id"
    ]
    files = [
        ("files", ("wide.png", png(1, (1200, 1000)), "image/png")),
        ("files", ("small.png", png(2, (1000, 900)), "image/png")),
        ("files", ("pano.png", png(3, (3000, 1000)), "image/png")),
    ]
    r = client.post(f"/api/datasets/{dataset_id}/images", files=files)
    ids = {o["filename"]: o["image_id"] for o in r.json()["imported"]}
    for name, iid in ids.items():
        boxes = (
            [[0, 0, 40, 500], [300, 300, 700, 700]]
            if name == "pano.png"
            else [[100, 200, 700, 600]]
        )
        r = client.put(
            f"/api/images/{iid}/caption",
            json={"revision": 0, "caption": caption_with_boxes(*boxes)},
        )
        assert r.status_code == 200, r.text
    return dataset_id


def lint(client: TestClient, dataset_id: int, profile: str) -> list[tuple[str, str, str]]:
    r = client.get(f"/api/datasets/{dataset_id}/lint", params={"profile": profile})
    assert r.status_code == 200, r.text
    wanted = {"low_resolution", "box_cropped"}
    return [(x["code"], x["image"], x["message"]) for x in r.json() if x["code"] in wanted]


def test_lint_judges_sizes_at_the_resolutions_the_profile_trains_at(
    client: TestClient, sized_dataset: int
) -> None:
    at_1024 = lint(client, sized_dataset, "24gb")
    assert [(code, image) for code, image, _ in at_1024] == [("low_resolution", "small.png")]
    assert "1000x900" in at_1024[0][2] and "1008x896" in at_1024[0][2]
    # 512, 768 and 1024: the panorama's top strip is cut at 768 (45%) and 512 (42%).
    multi = lint(client, sized_dataset, "48gb")
    assert [(code, image) for code, image, _ in multi] == [
        ("low_resolution", "small.png"),
        ("box_cropped", "pano.png"),
    ]
    assert "element 1's box loses 45% of its area" in multi[1][2] and "768 px" in multi[1][2]
    # The 12 GB profile trains at 768: nothing is below it, the strip is still cut.
    assert [(code, image) for code, image, _ in lint(client, sized_dataset, "12gb")] == [
        ("box_cropped", "pano.png")
    ]
    r = client.get(f"/api/datasets/{sized_dataset}/lint", params={"profile": "8gb"})
    assert r.status_code == 422 and "There is no GPU profile '8gb'" in r.text


def test_the_grid_flags_by_area_at_the_dataset_resolution(
    client: TestClient, sized_dataset: int
) -> None:
    images = client.get(f"/api/datasets/{sized_dataset}/images").json()
    assert {i["filename"]: i["flags"] for i in images} == {
        "wide.png": [],
        "small.png": ["low_resolution"],
        "pano.png": [],
    }


def test_the_export_page_says_the_resolutions_each_profile_trains_at(
    client: TestClient, sized_dataset: int
) -> None:
    page = BeautifulSoup(client.get(f"/datasets/{sized_dataset}/export").text, "html.parser")
    options = {
        o["value"]: o.text for o in page.select("[data-export-form] select[name=profile] option")
    }
    assert options["12gb"].endswith("· trains at 768 px")
    assert options["24gb"].endswith("· trains at 1024 px")
    assert options["48gb"].endswith("· trains at 512/768/1024 px")
    lint_text = page.select_one("[data-lint]").text  # type: ignore[union-attr]
    assert "low_resolution" in lint_text and "small.png" in lint_text
    assert "Low resolution" in page.select_one("[data-lint-rules]").text  # type: ignore[union-attr]


def test_the_crop_moves_boxes_by_a_few_thousandths() -> None:
    box = Box(0.05, 0.05, 0.95, 0.95)

    def moved(w: int, h: int, res: int) -> list[float]:
        seen = buckets.fit(w, h, resolution=res).seen(box)
        return [round((a - b) * 1000, 1) for a, b in zip(seen, box, strict=True)]

    # The caption still says 50..950; the trained image shows the same thing further out.
    assert moved(1200, 1000, 1024) == [0.0, -2.9, 0.0, 2.9]
    assert moved(1920, 1080, 1024) == [-2.0, 0.0, 2.0, 0.0]
    assert moved(4000, 3000, 512) == [-17.2, 0.1, 17.2, 2.1]
    assert moved(1024, 1024, 1024) == [0.0, 0.0, 0.0, 0.0]
