"""A batch's drafts landing as revisions: every rule of a draft's landing (people's work kept,
an approval withdrawn, a re-draft's undo, doubts, retries, a trashed image, a missing file),
the same through the batch's statements as through one image at a time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from sqlalchemy import Engine as DBEngine
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from app import datasets as ds
from app.captions import revisions
from app.captions.schema import Caption
from app.config import Settings
from app.drafting import jobs, pipeline
from app.engines.confidence import Confidence
from app.engines.interface import DraftInput, DraftOutput, Engine, parse_output
from app.engines.schema import BoxConvention
from app.images.store import content_store
from app.models import CaptionRevision, CaptionStatus, DraftItem, Image, utcnow
from tests.drafting.conftest import colour_dataset

COLOURS = ["#C81E1E", "#1EC81E", "#1E1EC8", "#C8C81E", "#1EC8C8", "#C81EC8", "#808080"]


def _answer() -> str:
    return json.dumps(
        {
            "high_level_description": "a field of colour",
            "style_description": {"aesthetics": "flat", "medium": "paint", "technique": "flat"},
            "compositional_deconstruction": {
                "background": "one colour",
                "elements": [
                    {"type": "obj", "bbox_2d": [0, 0, 500, 500], "desc": "a corner"},
                    {"type": "text", "bbox_2d": [400, 400, 1000, 900], "text": "OPEN"},
                ],
            },
        }
    )


class Stand(Engine):
    """Answers each image with a boxed draft and its confidences, except the images whose
    colour is in `unusable` (an output that cannot be used); reads every text as 'OPEM'."""

    name = "local"
    convention: BoxConvention = "qwen2vl"
    batch_size = 16

    def __init__(self, unusable: set[tuple[int, int, int]]) -> None:
        self.unusable = unusable

    def draft(self, inputs: list[DraftInput]) -> list[DraftOutput]:
        out = []
        for i in inputs:
            if i.image.getpixel((0, 0)) in self.unusable:
                out.append(DraftOutput(raw="{not json", error="not JSON"))
                continue
            o = parse_output(_answer(), convention="qwen2vl")
            o.confidence = {
                "high_level_description": Confidence(least=0.3, mean=0.8, tokens=5),
                "elements.1.text": Confidence(least=0.9, mean=0.95, tokens=2),
            }
            out.append(o)
        return out

    def read_texts(self, crops: list[PILImage.Image]) -> list[str | None] | None:
        return ["OPEM" for _ in crops]


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[k : k + 2], 16) for k in (1, 3, 5))  # type: ignore[return-value]


def _fixture(tmp_path: Path) -> tuple[DBEngine, Settings, int]:
    """Seven images: 0 new, 1 written by hand, 2 approved, 3 an earlier draft, 4 unusable
    twice, 5 to be trashed after each job is made, 6 its stored file to go."""
    db, settings, dataset_id = colour_dataset(tmp_path, COLOURS, "Landing")
    with Session(db) as session:
        dataset = ds.get_dataset(session, dataset_id)
        img = list(session.exec(select(Image).order_by(col(Image.position))).all())
        hand = Caption(high_level_description="written by hand")
        revisions.save(session, image=img[1], dataset=dataset, caption=hand, base=0)
        revisions.save(session, image=img[2], dataset=dataset, caption=hand, base=0)
        revisions.set_status(session, image=img[2], status=CaptionStatus.approved)
        drafted = parse_output(_answer(), convention="qwen2vl").caption
        assert drafted is not None
        revisions.save(
            session,
            image=img[3],
            dataset=dataset,
            caption=drafted,
            base=0,
            author=revisions.Author.engine,
            action=revisions.Action.draft,
            status=CaptionStatus.draft,
        )
    return db, settings, dataset_id


def _run(db: DBEngine, settings: Settings, dataset_id: int, *, overwrite: bool) -> None:
    with Session(db) as session:
        dataset = ds.get_dataset(session, dataset_id)
        job = jobs.create_job(
            session,
            dataset=dataset,
            engine="local",
            model="stand",
            batch_size=16,
            scope="all",
            overwrite_edited=overwrite,
        )
        job_id = job.id
        img = list(session.exec(select(Image).order_by(col(Image.position))).all())
        img[5].trashed_at = utcnow()
        session.add(img[5])
        session.commit()
        store = content_store(settings)
        blob = store.blob_path(img[6].sha256)
    assert job_id is not None
    blob.unlink(missing_ok=True)
    pipeline.run_job(
        db,
        job_id=job_id,
        engine=Stand({_rgb(COLOURS[4])}),
        store=store,
        max_pixels=settings.draft_max_pixels,
    )
    with Session(db) as session:  # the trashed image back for the next job
        img5 = session.exec(select(Image).where(Image.filename == "5.png")).one()
        img5.trashed_at = None
        session.add(img5)
        session.commit()


def _state(db: DBEngine) -> dict[str, Any]:
    """Everything a landing writes, element ids named by their order of appearance."""
    names: dict[str, str] = {}

    def named(text: str | None) -> Any:
        if text is None:
            return None
        data = json.loads(text)

        def walk(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: walk(x) for k, x in v.items()}
            if isinstance(v, list):
                return [walk(x) for x in v]
            return v

        out = json.dumps(walk(data), sort_keys=True)
        for element_id in sorted(set(_ids(data)), key=out.index):
            names.setdefault(element_id, f"e{len(names)}")
            out = out.replace(element_id, names[element_id])
        return json.loads(out)

    with Session(db) as session:
        images = [
            (i.filename, i.revision, i.status, i.draft_least)
            for i in session.exec(select(Image).order_by(col(Image.position)))
        ]
        revs = [
            (
                r.image_id,
                r.number,
                r.author,
                r.action,
                r.undo_to,
                r.redo_to,
                r.note,
                named(r.caption),
                named(r.doubts),
            )
            for r in session.exec(
                select(CaptionRevision).order_by(
                    col(CaptionRevision.image_id), col(CaptionRevision.number)
                )
            )
        ]
        items = [
            (i.job_id, i.image_id, i.status, i.attempts, i.error, i.revision, i.raw_output)
            for i in session.exec(
                select(DraftItem).order_by(col(DraftItem.job_id), col(DraftItem.image_id))
            )
        ]
        counts = [
            (j.status, j.done, j.failed, j.skipped)
            for j in session.exec(select(jobs.DraftJob).order_by(col(jobs.DraftJob.id)))
        ]
    return {"images": images, "revisions": revs, "items": items, "jobs": counts}


def _ids(data: Any) -> list[str]:
    found: list[str] = []
    if isinstance(data, dict):
        for k, v in data.items():
            if k == "id" and isinstance(v, str):
                found.append(v)
            elif k in ("readings",) and isinstance(v, dict):
                found += list(v)
            found += _ids(v)
        for k in data:
            if k.startswith("element:"):
                found.append(k.split(":", 1)[1].split(".", 1)[0])
    elif isinstance(data, list):
        for v in data:
            found += _ids(v)
    return found


def _landed(tmp_path: Path) -> dict[str, Any]:
    db, settings, dataset_id = _fixture(tmp_path)
    _run(db, settings, dataset_id, overwrite=False)
    _run(db, settings, dataset_id, overwrite=True)
    state = _state(db)
    db.dispose()
    return state


@pytest.mark.parametrize("pool_from", [2, 1000], ids=["processes", "threads"])
def test_a_batch_lands_by_every_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pool_from: int
) -> None:
    # Element palettes in processes, made while the texts are read again, or on threads.
    monkeypatch.setattr(pipeline, "POOL_FROM", pool_from)
    state = _landed(tmp_path)
    assert state["images"] == [
        ("0.png", 2, "draft", 0.3),
        ("1.png", 2, "draft", 0.3),  # kept by the first job, replaced when asked to
        ("2.png", 2, "needs_review", 0.3),  # approved: kept, then replaced and re-reviewed
        ("3.png", 3, "draft", 0.3),
        ("4.png", 0, "none", None),  # unusable twice in each job
        ("5.png", 0, "none", None),  # trashed while each job ran
        ("6.png", 0, "none", None),  # its file is gone
    ]
    notes = {(r[0], r[1]): (r[2], r[3], r[4], r[6]) for r in state["revisions"]}
    assert notes[(2, 2)] == ("engine", "draft", 1, "local stand")
    assert notes[(3, 2)] == (
        "engine",
        "draft",
        1,
        "local stand; " + revisions.APPROVAL_WITHDRAWN,
    )
    assert notes[(4, 3)] == ("engine", "draft", 2, "local stand")
    first = {r[1]: r for r in state["items"] if r[0] == 1}
    assert [first[i][2:5] for i in sorted(first)] == [
        ("done", 1, None),
        ("skipped", 1, "kept: the caption is edited by hand"),
        ("skipped", 1, "kept: the caption is approved"),
        ("done", 1, None),
        ("failed", 2, "not JSON"),
        ("skipped", 0, "moved to the trash before it was drafted"),
        ("failed", 0, "the image's stored file is missing"),
    ]
    assert state["jobs"] == [("done", 2, 2, 3), ("done", 4, 2, 1)]
    # The doubts name the drafted elements, with the second reading that differs.
    doubts = state["revisions"][1][8]
    assert doubts["readings"]["e1"]["read"] == "OPEM"
    assert doubts["confidence"]["high_level_description"]["least"] == 0.3


def test_a_batch_lands_as_one_image_at_a_time_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = _landed(tmp_path / "batch")
    monkeypatch.setattr(revisions, "heads_of", lambda session, image_ids: {})
    one_by_one = _landed(tmp_path / "one")
    assert batch == one_by_one


def test_an_image_changed_since_it_was_read_lands_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = _landed(tmp_path / "batch")
    # Every image read as it was one revision earlier: as if each had been saved meanwhile.
    heads_of = revisions.heads_of

    def read_earlier(session: Session, image_ids: list[int]) -> Any:
        read = heads_of(session, image_ids)
        for image, _ in read.values():
            set_committed_value(image, "revision", image.revision - 1)
        return read

    one_at_a_time = []
    land = pipeline._land

    def counted(*args: Any, **kwargs: Any) -> None:
        one_at_a_time.append(args[2].image_id)
        land(*args, **kwargs)

    monkeypatch.setattr(revisions, "heads_of", read_earlier)
    monkeypatch.setattr(pipeline, "_land", counted)
    again = _landed(tmp_path / "again")
    assert again == batch
    # Those the batch moved (the others were kept before any statement).
    assert len(one_at_a_time) == 2 + 4
