"""Transparency in an export: with `--keep-alpha` (alpha_mask: true) the trainer reads every
image's fourth channel, so every exported image must carry one (docs/trainer.md section 5)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from tests import imagefiles as f
from tests.export import trainer_model as trainer
from tests.export.test_export import CAPTION, export

SIZE = (320, 240)


def _png(img: PILImage.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def mixed_files() -> list[tuple[str, bytes]]:
    """One image of each kind a user drops in; the left half of each transparent one is clear."""
    rgb = f.picture(7, SIZE)
    rgba = rgb.convert("RGBA")
    rgba.paste((0, 0, 0, 0), (0, 0, SIZE[0] // 2, SIZE[1]))
    grey = rgb.convert("L")
    grey_alpha = rgba.convert("LA")
    palette = rgb.quantize(8)
    colours = (palette.getpalette() or [])[: 8 * 3]
    palette.putpalette(colours + [0] * (16 * 3 - len(colours)))
    palette.paste(15, (0, 0, SIZE[0] // 2, SIZE[1]))  # index 15 is the transparent one
    return [
        ("rgb.png", _png(rgb)),
        ("rgba.png", _png(rgba)),
        ("grey.png", _png(grey)),
        ("grey_alpha.png", _png(grey_alpha)),
        ("palette.png", _png(palette, transparency=15)),
        ("photo.jpg", f.jpeg_bytes(8, SIZE)),
    ]


def mixed_dataset(client: TestClient) -> int:
    dataset_id = client.post(
        "/api/datasets", json={"name": "Cut-outs", "trigger_word": "cut"}
    ).json()["id"]
    files = [("files", (name, data, "image/png")) for name, data in mixed_files()]
    imported = client.post(f"/api/datasets/{dataset_id}/images", files=files).json()["imported"]
    assert len(imported) == 6
    for o in imported:
        r = client.put(
            f"/api/images/{o['image_id']}/caption", json={"revision": 0, "caption": CAPTION}
        )
        assert r.status_code == 200, r.text
        client.post(f"/api/images/{o['image_id']}/status", json={"status": "approved"})
    return dataset_id


def test_keep_alpha_exports_what_the_trainers_alpha_path_reads(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id = mixed_dataset(client)
    report = export(client, dataset_id, tmp_path / "aitk", keep_alpha=True)
    folder = report.dataset_dir
    assert folder is not None
    # The trainer's own handling (trainer_model.read_with_alpha_mask): latent caching must not
    # crash (a greyscale image did, IndexError), and no item may be skipped (an RGB one was).
    read = trainer.read_with_alpha_mask(folder)
    assert len(read) == 6
    assert {name: r.skipped for name, r in read.items() if r.skipped} == {}
    by_source = {name: read[f"{n:03d}.png"] for n, (name, _) in enumerate(mixed_files(), 1)}
    for name, r in by_source.items():
        mask = np.asarray(r.mask)
        assert mask.shape == (SIZE[1], SIZE[0])
        if name in ("rgb.png", "grey.png", "photo.jpg"):
            assert mask.min() == 255, name  # no transparency: the whole image is trained
        else:
            left, right = mask[:, : SIZE[0] // 2], mask[:, SIZE[0] // 2 :]
            assert left.max() == 0 and right.min() == 255, name  # the clear half is masked out
    # The pixels the VAE encodes where the image is opaque are the image's own.
    want = np.asarray(f.picture(7, SIZE).convert("RGB"), dtype=int)
    for name in ("rgb.png", "rgba.png"):
        got = np.asarray(by_source[name].pixels, dtype=int)
        assert np.abs(got[:, SIZE[0] // 2 :] - want[:, SIZE[0] // 2 :]).max() == 0, name
    grey = np.asarray(by_source["grey.png"].pixels, dtype=int)
    assert (grey[..., 0] == grey[..., 1]).all() and grey.std() > 10  # grey, not blank


def test_without_keep_alpha_transparency_is_flattened_on_white(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id = mixed_dataset(client)
    folder = export(client, dataset_id, tmp_path / "aitk").dataset_dir
    assert folder is not None
    for n in range(1, 7):
        pixels = trainer.trainer_pixels(folder / f"{n:03d}.png", alpha_mask=False)
        assert pixels.size == SIZE
        with PILImage.open(folder / f"{n:03d}.png") as im:
            assert im.mode in ("RGB", "L")  # nothing for the trainer to drop
    for n in (2, 4, 5):  # rgba, grey_alpha, palette: the clear half is white
        pixels = np.asarray(trainer.trainer_pixels(folder / f"{n:03d}.png", alpha_mask=False))
        assert (pixels[:, : SIZE[0] // 2] == 255).all(), n
