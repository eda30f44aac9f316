"""A drafting job's own work around the engine: its parts timed, and palettes made on every
core while the captions before them land, each caption with its own image's colours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlmodel import Session, select

from app import datasets as ds
from app.captions import revisions
from app.drafting import jobs, pipeline
from app.engines.interface import DraftInput, DraftOutput, Engine, parse_output
from app.engines.schema import BoxConvention
from app.images.decode import display_rgb
from app.images.store import content_store
from app.models import Image, ItemStatus
from tests.drafting.conftest import colour_dataset

COLOURS = ["#C81E1E", "#1EC81E", "#1E1EC8", "#C8C81E", "#1EC8C8", "#C81EC8"]


def _answer() -> str:
    """A draft with two boxed elements, as Qwen2-VL writes one."""
    return json.dumps(
        {
            "high_level_description": "a field of colour",
            "style_description": {"aesthetics": "flat", "medium": "paint", "technique": "flat"},
            "compositional_deconstruction": {
                "background": "one colour",
                "elements": [
                    {"type": "obj", "bbox_2d": [0, 0, 500, 500], "desc": "a corner"},
                    {"type": "obj", "bbox_2d": [400, 400, 1000, 1000], "desc": "another"},
                ],
            },
        }
    )


class Stand(Engine):
    """An engine that answers every image with the same boxed draft, at once."""

    name = "local"
    convention: BoxConvention = "qwen2vl"
    batch_size = 4

    def draft(self, inputs: list[DraftInput]) -> list[DraftOutput]:
        return [parse_output(_answer(), convention="qwen2vl") for _ in inputs]


@pytest.mark.parametrize("pool_from", [2, 1000], ids=["processes", "threads"])
def test_job_parts_are_timed_and_each_caption_gets_its_own_images_palettes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pool_from: int
) -> None:
    monkeypatch.setattr(pipeline, "POOL_FROM", pool_from)
    db, settings, dataset_id = colour_dataset(tmp_path, COLOURS, "Colours")
    with Session(db) as session:
        dataset = ds.get_dataset(session, dataset_id)
        job = jobs.create_job(
            session, dataset=dataset, engine="local", model="stand", batch_size=4, scope="all"
        )
        job_id = job.id
    assert job_id is not None
    parts: dict[str, float] = {}
    ended = pipeline.run_job(
        db,
        job_id=job_id,
        engine=Stand(),  # type: ignore[arg-type]
        store=content_store(settings),
        max_pixels=settings.draft_max_pixels,
        timings=parts,
    )
    assert ended.done == len(COLOURS), ended.error
    # Two batches: the first loaded in line, the second ahead; every part of the job counted.
    assert {
        "engine_s",
        "load_in_line_s",
        "load_read_s",
        "load_decode_s",
        "wait_ahead_s",
        "palettes_and_land_s",
        "palettes_wait_image_s",
        "palettes_elements_s",
        "land_s",
    } <= set(parts)
    assert all(v >= 0 for v in parts.values())
    with Session(db) as session:
        images = session.exec(select(Image).order_by(Image.position)).all()
        by_name = {}
        for image in images:
            rev = revisions.head(session, image)
            assert rev is not None
            by_name[image.filename] = revisions.parse(rev)
        items = session.exec(select(jobs.DraftItem)).all()
        assert {i.status for i in items} == {ItemStatus.done}
    for n, colour in enumerate(COLOURS):
        caption = by_name[f"{n}.png"]
        assert caption is not None
        assert caption.style.color_palette == [colour]
        assert [e.color_palette for e in caption.composition.elements] == [[colour], [colour]]
    db.dispose()


def test_image_palettes_made_in_processes_equal_those_from_the_model_s_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Painting-like pictures (gradients, strokes), where a different decode or resize would
    # give other colours: the processes decode the stored file again, as the load did.
    import numpy as np

    rng = np.random.default_rng(3)
    blobs = []
    for n in range(4):
        y, x = np.mgrid[0:600, 0:900]
        rgb = np.stack([(x * (n + 1)) % 256, (y * 2 + n * 40) % 256, (x + y) % 256], axis=-1)
        rgb = (rgb + rng.integers(0, 40, rgb.shape)).clip(0, 255).astype("uint8")
        blob = tmp_path / f"{n}.jpg"
        PILImage.fromarray(rgb).save(blob, quality=85)
        blobs.append(blob)
    max_pixels = 400 * 400
    side = pipeline.decoded_side(max_pixels)
    loaded = pipeline._Loaded(item_ids=[10, 11, 12, 13])
    for n, blob in enumerate(blobs):
        loaded.inputs.append(DraftInput(display_rgb(blob.read_bytes(), max_side=side), ""))
        loaded.ready.append(10 + n)
        loaded.blobs.append(blob)
    monkeypatch.setattr(pipeline, "POOL_FROM", 1000)
    on_threads = pipeline._palettes(loaded, max_pixels)
    monkeypatch.setattr(pipeline, "POOL_FROM", 2)
    in_processes = pipeline._palettes(loaded, max_pixels)
    assert list(in_processes) == [10, 11, 12, 13]
    for item_id, pixels in in_processes.items():
        assert pixels.palette == on_threads[item_id].palette
        assert len(pixels.palette) > 1
        assert pixels.img.tobytes() == on_threads[item_id].img.tobytes()
    # A file gone since it was loaded: made from the image decoded for the model.
    blobs[1].unlink()
    gone = pipeline._palettes(loaded, max_pixels)
    assert gone[11].palette == on_threads[11].palette
