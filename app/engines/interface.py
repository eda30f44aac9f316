"""What a drafting engine is to the app: its inputs and outputs, its errors, its names.

Two engines implement it: `local` (app/engines/local/, transformers on this machine's GPU)
and `openai` (app/engines/openai_engine.py, any OpenAI-compatible chat server); which one a
job uses is opened by app/drafting/open_engine.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from PIL import Image

from app.captions.boxes import Box
from app.captions.schema import Caption
from app.engines.confidence import Confidence, field_confidences
from app.engines.schema import BoxConvention, DraftParseError, to_caption
from app.errors import UserError

EngineName = Literal["local", "openai"]
ENGINE_NAMES: tuple[EngineName, ...] = get_args(EngineName)


def engine_name(value: str) -> EngineName:
    """`value` as an engine name; a DraftError saying which exist otherwise."""
    for name in ENGINE_NAMES:
        if value == name:
            return name
    raise DraftError(f"Unknown drafting engine {value!r}; use {' or '.join(ENGINE_NAMES)}.")


class DraftError(UserError):
    """Drafting cannot go on; `message` says why and what to do."""

    status_code = 422


@dataclass
class DraftInput:
    image: Image.Image  # RGB, as displayed (EXIF orientation applied)
    prompt: str


@dataclass
class DraftOutput:
    raw: str
    caption: Caption | None = None
    error: str | None = None
    # How sure the model was of each field (app/engines/confidence.py); None when the engine
    # or server gives no token probabilities.
    confidence: dict[str, Confidence] | None = None


# A second reading of on-image text: the crop of a text element's box, read alone.
READ_MARGIN = 0.15  # of the box's size on each side, and at least 8 px: a tight box clips


def read_crop(image: Image.Image, box: Box) -> Image.Image:
    """The part of `image` a second reading of `box` sees: the box with its margin."""
    w, h = image.size
    mx = max(8.0, READ_MARGIN * (box.x1 - box.x0) * w)
    my = max(8.0, READ_MARGIN * (box.y1 - box.y0) * h)
    return image.crop(
        (
            max(0, int(box.x0 * w - mx)),
            max(0, int(box.y0 * h - my)),
            min(w, int(box.x1 * w + mx) + 1),
            min(h, int(box.y1 * h + my) + 1),
        )
    )


READ_PROMPT = (
    "This picture is cut from a larger image around one piece of text. Write down exactly "
    "the text it shows: every word, number and sign as written, in the same case and "
    "spelling, with a line break where a new line starts. Write nothing that is not written "
    "there; if no text can be read, give an empty string."
)


class Engine:
    """An engine: `draft` and `close` are its own; the abilities below it has or not, and the
    defaults here say "not", so callers call them all, on any engine, and never probe."""

    name: str
    convention: BoxConvention
    batch_size: int

    def draft(self, inputs: list[DraftInput]) -> list[DraftOutput]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def prefetch(self, inputs: list[DraftInput]) -> None:
        """A hint, from a thread, that `draft(inputs)` (the same list) comes next, so the
        engine can start preparing while it drafts the batch before."""

    def prefetch_decoded(self, decoded: Iterable[DraftInput], count: int) -> list[DraftInput]:
        """The `count` inputs of the batch `draft` is called with next, taken as each is
        decoded: an engine that can starts preparing the first ones while the rest decode
        (a job's first batch, which the GPU waits for). The list to call `draft` with."""
        return list(decoded)

    def new_job(self) -> None:
        """A job starts on this engine (kept from an earlier one): what it counts, from zero."""

    def server_stats(self) -> list[dict[str, Any]] | None:
        """Each server's progress in this job, for an engine drafting on servers; else None."""
        return None

    def leave_one_core(self) -> bool:
        """On the CPU: draws on one core fewer than the machine has, and says it does."""
        return False

    def read_texts(self, crops: list[Image.Image]) -> list[str | None] | None:
        """The text each crop shows, read alone (READ_PROMPT), None for a crop it could not
        read; None when the engine cannot give a second reading."""
        return None


def parse_output(
    raw: str,
    *,
    convention: BoxConvention,
    resized: tuple[int, int] | None = None,
    tokens: list[tuple[bytes, float]] | None = None,
) -> DraftOutput:
    """The draft read from the model's text; `tokens` (each sampled token's bytes and log
    probability) give its fields' confidences."""
    try:
        caption = to_caption(raw, convention=convention, resized=resized)
    except DraftParseError as e:
        return DraftOutput(raw, error=e.reason)
    confidence = field_confidences(raw, tokens) or None if tokens else None
    return DraftOutput(raw, caption=caption, confidence=confidence)
