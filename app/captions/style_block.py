"""The dataset's style block: the style fields the guide wants identical in every caption.

A caption inherits each block field it leaves empty and overrides it by holding another value.
Revisions store captions with inherited fields empty, so editing the block changes every
caption that inherits it; `effective` gives the caption as it is shown and exported.
"""

from __future__ import annotations

from typing import Literal

from sqlmodel import Session

from app.captions.schema import MEDIA, Caption
from app.errors import Invalid
from app.models import Dataset, utcnow

STYLE_FIELDS = ("aesthetics", "lighting", "medium", "render")
FieldState = Literal["inherited", "overridden", "own"]


def block_of(dataset: Dataset) -> dict[str, str]:
    """The dataset's block fields that hold a value."""
    values = {
        "aesthetics": dataset.style_aesthetics,
        "lighting": dataset.style_lighting,
        "medium": dataset.style_medium or "",
        "render": dataset.style_render,
    }
    return {k: v for k, v in values.items() if v}


def set_block(
    dataset: Dataset, *, aesthetics: str, lighting: str, medium: str | None, render: str
) -> None:
    if medium and medium not in MEDIA:
        raise Invalid(f"Unknown medium {medium!r}; use one of {', '.join(MEDIA)}.")
    dataset.style_aesthetics = aesthetics.strip()
    dataset.style_lighting = lighting.strip()
    dataset.style_medium = medium or None
    dataset.style_render = render.strip()


def save_block(
    session: Session,
    *,
    dataset: Dataset,
    aesthetics: str,
    lighting: str,
    medium: str | None,
    render: str,
) -> None:
    """Makes these the dataset's style block and saves it (the page's, the editor's, the API's)."""
    set_block(dataset, aesthetics=aesthetics, lighting=lighting, medium=medium, render=render)
    dataset.updated_at = utcnow()
    session.add(dataset)
    session.commit()


def effective(stored: Caption, block: dict[str, str]) -> Caption:
    """The caption as shown and exported: empty style fields take the block's value."""
    missing = {k: v for k, v in block.items() if not _value(stored, k)}
    if not missing:
        return stored
    return stored.model_copy(update={"style": stored.style.model_copy(update=missing)})


def stored_form(caption: Caption, block: dict[str, str]) -> Caption:
    """The caption to store: fields equal to the block's are emptied, so they inherit."""
    same = {k: _empty(k) for k, v in block.items() if _value(caption, k) == v}
    if not same:
        return caption
    return caption.model_copy(update={"style": caption.style.model_copy(update=same)})


def field_states(stored: Caption, block: dict[str, str]) -> dict[str, FieldState]:
    """For each style field: inherited from the block, overriding it, or the caption's own."""
    states: dict[str, FieldState] = {}
    for k in STYLE_FIELDS:
        if k not in block:
            states[k] = "own"
        elif _value(stored, k) in ("", block[k]):
            states[k] = "inherited"
        else:
            states[k] = "overridden"
    return states


def without_overrides(stored: Caption, block: dict[str, str]) -> Caption:
    """The caption with every block field inheriting again."""
    return stored.model_copy(
        update={"style": stored.style.model_copy(update={k: _empty(k) for k in block})}
    )


def _value(caption: Caption, key: str) -> str:
    return getattr(caption.style, key) or ""


def _empty(key: str) -> str | None:
    return None if key == "medium" else ""
