"""What a drafting engine is to the app: its inputs and outputs, its errors, its names.

Two engines implement it: `local` (app/engines/local/, transformers on this machine's GPU)
and `openai` (app/engines/openai_engine.py, any OpenAI-compatible chat server); which one a
job uses is opened by app/drafting/open_engine.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, get_args

from PIL import Image

from app.captions.schema import Caption
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


class Engine(Protocol):
    name: str
    convention: BoxConvention
    batch_size: int

    def draft(self, inputs: list[DraftInput]) -> list[DraftOutput]: ...

    def close(self) -> None: ...


# An engine may also have `prefetch(inputs)`: a hint, from a thread, that `draft(inputs)` (the
# same list) comes next, so it can start preparing while it drafts the batch before; and, if
# it drafts on several servers, `server_stats()` (each one's progress) and `new_job()` (that
# progress counted from zero, as a job starts).


def parse_output(
    raw: str, *, convention: BoxConvention, resized: tuple[int, int] | None = None
) -> DraftOutput:
    try:
        return DraftOutput(raw, caption=to_caption(raw, convention=convention, resized=resized))
    except DraftParseError as e:
        return DraftOutput(raw, error=e.reason)
