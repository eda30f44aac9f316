"""Database tables. The schema itself is created and changed only by Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class CaptionStatus(StrEnum):
    """An image's review status, stored as text (a new value needs no migration)."""

    none = "none"  # no caption yet
    draft = "draft"  # written by the drafting engine or read from a caption file, untouched
    edited = "edited"  # a person saved it, not yet reviewed
    needs_review = "needs_review"
    approved = "approved"

    @property
    def label(self) -> str:
        return "no caption" if self is CaptionStatus.none else self.value.replace("_", " ")


class Flag(StrEnum):
    duplicate = "duplicate"
    low_resolution = "low_resolution"
    unreadable_caption = "unreadable_caption"
    ambiguous_boxes = "ambiguous_boxes"
    transparent = "transparent"

    @property
    def label(self) -> str:
        return {
            "duplicate": "near-duplicate",
            "low_resolution": "low resolution",
            "unreadable_caption": "unreadable caption file",
            "ambiguous_boxes": "box format to choose",
            "transparent": "transparent pixels",
        }[self.value]


class Author(StrEnum):
    user = "user"
    engine = "engine"  # the drafting model
    sidecar = "sidecar"  # a caption file found beside the image at import


class Action(StrEnum):
    edit = "edit"
    draft = "draft"
    sidecar = "sidecar"  # read from the caption file found beside the image
    undo = "undo"
    redo = "redo"
    revert = "revert"
    find_replace = "find_replace"  # find and replace across the dataset
    apply_style = "apply_style"  # the dataset's style block applied to every caption
    palettes = "palettes"  # palettes filled from the pixels
    box_format = "box_format"  # an imported file's boxes re-read in the format chosen


class Dataset(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=200)
    slug: str = Field(unique=True, max_length=200)
    trigger_word: str = Field(default="", max_length=200)
    resolution: int = Field(default=1024)
    notes: str = Field(default="")
    # The style block the guide wants identical in every caption; captions inherit each field
    # they leave empty (app/captions/style_block.py).
    style_aesthetics: str = Field(default="")
    style_lighting: str = Field(default="")
    style_medium: str | None = Field(default=None, max_length=20)
    style_render: str = Field(default="")
    # Extra instructions for the drafting model, written by the user for this dataset.
    draft_instructions: str = Field(default="")
    # After a draft, each text element's box is read again alone and compared (a second
    # reading of the transcription); one more short request per text element.
    second_reading: bool = Field(default=True, sa_column_kwargs={"server_default": "1"})
    # The sample set as the user saved it on the export page or through the API (JSON, see
    # app/export/samples.py dump_set); None: the guide's plan made from the captions.
    sample_set: str | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # Deleting a dataset sets this: it leaves every list, keeps its rows and files, and can be
    # restored until it is deleted for good (app/datasets.py, DELETED_DAYS).
    deleted_at: datetime | None = Field(default=None, index=True)


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
    # The share of pixels not fully opaque, measured at import; the export flattens them on
    # white unless alpha is kept (app/export/images.py). None: imported before it was measured.
    transparent_share: float | None = None
    status: CaptionStatus = Field(default=CaptionStatus.none)
    # An AI-Toolkit sidecar found beside the image, kept verbatim until it is parsed.
    caption_raw: str | None = None
    caption_raw_ext: str | None = None
    # Why the sidecar could not be read; it stays raw, flagged, never dropped.
    caption_error: str | None = None
    # The sidecar's boxes could be 0..1000 or pixels; the user chooses (captions/sidecars.py).
    boxes_ambiguous: bool = False
    # Number of the caption's newest revision, 0 when it has none; a save names the one it
    # edits, so a stale save is refused (optimistic concurrency).
    revision: int = 0
    # The probability of the least likely value token of the image's newest draft (0..1):
    # the grid's "least sure first" order. None: never drafted, or without token probabilities.
    draft_least: float | None = None
    created_at: datetime = Field(default_factory=utcnow)
    # Set while the image is in the dataset's trash (app/images/trash.py): it keeps its rows,
    # history and stored bytes, and every listing, count, export and job leaves it out.
    trashed_at: datetime | None = Field(default=None, index=True)


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


class CaptionRevision(SQLModel, table=True):
    """One saved state of an image's caption. Rows are only ever added."""

    __table_args__ = (UniqueConstraint("image_id", "number", name="uq_revision_image_number"),)

    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="image.id", ondelete="CASCADE", index=True)
    number: int
    # The canonical Caption as JSON; style fields inherited from the dataset are left empty.
    caption: str
    author: Author
    action: Action
    # Undo restores the state of `undo_to`, redo that of `redo_to` (revision numbers).
    undo_to: int | None = None
    redo_to: int | None = None
    # Changes made across a dataset in one go (find and replace, apply style) share a batch.
    batch: str | None = Field(default=None, index=True, max_length=32)
    note: str = ""
    # A drafted revision's own doubts, never exported: each field's and element's confidence
    # (app/engines/confidence.py, elements by id) and each text element's second reading,
    # as JSON (app/captions/doubts.py).
    doubts: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    cancelled = "cancelled"
    failed = "failed"


class ItemStatus(StrEnum):
    queued = "queued"
    done = "done"
    failed = "failed"
    skipped = "skipped"


class DraftJob(SQLModel, table=True):
    """Drafting captions for some images of a dataset, run by a worker, never in a request."""

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", ondelete="CASCADE", index=True)
    engine: str = Field(max_length=20)
    model: str
    batch_size: int
    # Also replace captions a person wrote or approved (as new revisions; undo brings them back).
    overwrite_edited: bool = False
    status: JobStatus = Field(default=JobStatus.queued, index=True)
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    error: str | None = None
    cancel_requested: bool = False
    # "host:pid" of the process running it; a job whose process is gone is taken over.
    worker: str | None = None
    heartbeat_at: datetime | None = None
    # Each server's progress in this job as JSON (an engine drafting on servers), written with
    # the heartbeat; the web process reads it here.
    server_stats: str | None = None
    drafting_seconds: float = 0.0
    # The prompt's rules, the style block and the dataset's instructions as the job drafted
    # with them, for an image of reference shape (app/engines/prompt.py reference_prompt):
    # the draft report compares drafts per prompt. Empty for jobs older than the column.
    prompt: str = Field(default="", sa_column_kwargs={"server_default": ""})
    # The openai engine's server(s), as chosen on the drafting card; None: the settings'.
    base_url: str | None = Field(default=None, max_length=2000)
    # A test of the engine on one image: its draft is kept in the item, not saved as a caption.
    trial: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None


class DraftChoice(SQLModel, table=True):
    """The drafting engine chosen on the drafting card, for the whole app (one row, id 1):
    it overrides ATELIER_DRAFT_ENGINE, _MODEL and _BASE_URL until set back to them."""

    id: int | None = Field(default=None, primary_key=True)
    engine: str = Field(max_length=20)
    model: str = Field(max_length=500)
    base_url: str | None = Field(default=None, max_length=2000)
    updated_at: datetime = Field(default_factory=utcnow)


class ImportRecord(SQLModel, table=True):
    """One import into a dataset (a folder, or one request of an upload) and its report, for
    the dataset's import history."""

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", ondelete="CASCADE", index=True)
    origin: str = Field(max_length=20)  # "folder" (the CLI) or "upload"
    # The requests of one browser upload share this (the page sends files in batches).
    upload: str | None = Field(default=None, max_length=64)
    imported: int = 0
    duplicates: int = 0
    refused: int = 0
    report: str  # the report as JSON, as the upload route answered it
    created_at: datetime = Field(default_factory=utcnow)


class DraftItem(SQLModel, table=True):
    """One image of a drafting job, with what became of it."""

    __table_args__ = (Index("ix_draftitem_job_status", "job_id", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="draftjob.id", ondelete="CASCADE")
    image_id: int = Field(foreign_key="image.id", ondelete="CASCADE", index=True)
    status: ItemStatus = Field(default=ItemStatus.queued)
    attempts: int = 0
    error: str | None = None
    # The model's output when it could not be used, kept for inspection.
    raw_output: str | None = None
    revision: int | None = None


class TrainStatus(StrEnum):
    running = "running"
    stopping = "stopping"
    done = "done"
    stopped = "stopped"
    failed = "failed"


class TrainJob(SQLModel, table=True):
    """An AI-Toolkit run started by Atelier: the process is detached, so it outlives a restart."""

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", ondelete="CASCADE", index=True)
    profile: str = Field(max_length=20)
    checkout: str
    python: str
    config_path: str
    # The YAML exactly as the run was started with it: the board labels samples from it.
    config_yaml: str
    run_dir: str
    log_path: str
    status: TrainStatus = Field(default=TrainStatus.running, index=True)
    # The process (and its group) with its start time: a pid alone may have been reused.
    pid: int | None = None
    pid_started: float | None = None
    total_steps: int = 0
    last_step: int = 0
    stop_requested_at: datetime | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class RunFavourite(SQLModel, table=True):
    """A sample marked on the board: one prompt (sample index) at one step of a run."""

    __table_args__ = (
        UniqueConstraint("run_dir", "sample_index", "step", name="uq_runfavourite_sample"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_dir: str = Field(index=True)
    sample_index: int
    step: int
    created_at: datetime = Field(default_factory=utcnow)


class LoraPick(SQLModel, table=True):
    """The step chosen from a run, and where its checkpoint was copied."""

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", ondelete="CASCADE", index=True)
    run_dir: str
    step: int
    checkpoint: str
    copied_to: str
    created_at: datetime = Field(default_factory=utcnow)
