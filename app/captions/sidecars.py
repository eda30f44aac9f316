"""Caption files imported beside the images: read into revisions, or kept raw and flagged.

A file whose boxes all lie within 0..1000 could hold official boxes or pixel boxes of a
small image. Unless the import declared the format, such images are flagged and read as
official until the user chooses for the dataset; choosing re-reads every box the user has
not moved since.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from app.captions import revisions
from app.captions.dialects import BoxFormat, CaptionParseError, Reading, read_caption
from app.captions.schema import Caption
from app.captions.style_block import block_of, stored_form
from app.models import Action, Author, CaptionStatus, Dataset, Image


@dataclass
class SidecarReport:
    read: int = 0
    unreadable: dict[int, str] = field(default_factory=dict)  # image id -> why
    ambiguous: int = 0


def read_sidecars(
    session: Session, *, dataset: Dataset, images: list[Image], bbox_format: BoxFormat | None
) -> SidecarReport:
    """Turns each image's raw caption file into its first revision (no commit)."""
    report = SidecarReport()
    block = block_of(dataset)
    for image in images:
        if image.caption_raw is None or image.revision != 0:
            continue
        try:
            reading = _read(image, bbox_format)
        except CaptionParseError as e:
            image.caption_error = e.reason
            report.unreadable[image.id] = e.reason  # type: ignore[index]
            session.add(image)
            continue
        image.boxes_ambiguous = reading.ambiguous
        report.read += 1
        report.ambiguous += reading.ambiguous
        session.add(image)
        session.flush()
        revisions.append(
            session,
            image=image,
            stored=stored_form(reading.caption, block),
            base=0,
            author=Author.sidecar,
            action=Action.sidecar,
            undo_to=None,
            status=CaptionStatus.needs_review
            if reading.ambiguous or reading.notes
            else CaptionStatus.draft,
            note="; ".join(reading.notes),
        )
    return report


def ambiguous_images(session: Session, *, dataset: Dataset) -> list[Image]:
    return list(
        session.exec(
            select(Image)
            .where(Image.dataset_id == dataset.id, col(Image.boxes_ambiguous).is_(True))
            .order_by(col(Image.position))
        )
    )


def readings(image: Image) -> tuple[Caption, Caption]:
    """The official and the pixel reading of an ambiguous image's caption file."""
    return _read(image, "official").caption, _read(image, "pixel").caption


def choose_box_format(session: Session, *, dataset: Dataset, box_format: BoxFormat) -> int:
    """Re-reads the boxes of every ambiguous image in `box_format`; returns captions changed."""
    changed = 0
    for image in ambiguous_images(session, dataset=dataset):
        image.boxes_ambiguous = False
        session.add(image)
        rev = revisions.head(session, image)
        if box_format == "official" or rev is None:
            continue  # they were read as official already
        as_official, as_pixels = readings(image)
        current = revisions.parse(rev)
        elements = list(current.composition.elements)
        for n, e in enumerate(elements):
            if n < len(as_official.composition.elements) and (
                e.box is not None and e.box == as_official.composition.elements[n].box
            ):
                elements[n] = e.model_copy(update={"box": as_pixels.composition.elements[n].box})
        updated = current.model_copy(
            update={"composition": current.composition.model_copy(update={"elements": elements})}
        )
        if updated != current:
            revisions.append(
                session,
                image=image,
                stored=updated,
                base=image.revision,
                author=Author.user,
                action=Action.box_format,
                undo_to=image.revision,
                note="boxes read as pixels of the image",
            )
            changed += 1
    session.commit()
    return changed


def _read(image: Image, bbox_format: BoxFormat | None) -> Reading:
    assert image.caption_raw is not None
    return read_caption(
        image.caption_raw,
        ext=image.caption_raw_ext or "json",
        width=image.width,
        height=image.height,
        bbox_format=bbox_format,
    )
