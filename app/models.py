"""Database tables. The schema itself is created and changed only by Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class CaptionStatus(StrEnum):
    none = "none"
    draft = "draft"
    needs_review = "needs_review"
    approved = "approved"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


class Flag(StrEnum):
    duplicate = "duplicate"
    low_resolution = "low_resolution"

    @property
    def label(self) -> str:
        return {"duplicate": "near-duplicate", "low_resolution": "low resolution"}[self.value]


class Dataset(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=200)
    slug: str = Field(unique=True, max_length=200)
    trigger_word: str = Field(default="", max_length=200)
    resolution: int = Field(default=1024)
    notes: str = Field(default="")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Image(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("dataset_id", "sha256", name="uq_image_dataset_sha256"),
        Index("ix_image_dataset_position", "dataset_id", "position"),
        Index("ix_image_dataset_status", "dataset_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", ondelete="CASCADE")
    position: int
    sha256: str = Field(index=True, max_length=64)
    filename: str
    format: str
    # Width and height as displayed: EXIF orientation already applied.
    width: int
    height: int
    megapixels: float
    aspect_ratio: float
    orientation: int = 1
    mode: str
    has_icc: bool = False
    frames: int = 1
    byte_size: int
    phash: str = Field(max_length=16)
    status: CaptionStatus = Field(default=CaptionStatus.none)
    # An AI-Toolkit sidecar found beside the image, kept verbatim until it is parsed.
    caption_raw: str | None = None
    caption_raw_ext: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class NearDuplicate(SQLModel, table=True):
    """Two images of one dataset whose perceptual hashes are close; open until resolved."""

    __table_args__ = (UniqueConstraint("image_a_id", "image_b_id", name="uq_near_duplicate_pair"),)

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", ondelete="CASCADE", index=True)
    image_a_id: int = Field(foreign_key="image.id", ondelete="CASCADE", index=True)
    image_b_id: int = Field(foreign_key="image.id", ondelete="CASCADE", index=True)
    distance: int
    kept_both: bool = False
    created_at: datetime = Field(default_factory=utcnow)
