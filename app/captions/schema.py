"""The Ideogram 4 caption as ONE set of pydantic models, in Atelier's canonical form.

Differences from the official dialect on disk, each handled in app/captions/dialects.py:
boxes are `Box` (see boxes.py), and the render technique is one field, `render`, written as
`photo` when the medium is photograph and as `art_style` for every other medium.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from app.captions.boxes import Box

Medium = Literal["photograph", "illustration", "3d_render", "painting", "graphic_design"]
MEDIA: tuple[str, ...] = ("photograph", "illustration", "3d_render", "painting", "graphic_design")
IMAGE_PALETTE_MAX = 16
ELEMENT_PALETTE_MAX = 5
_HEX = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


def normalise_hex(value: str) -> str:
    """'#abc' -> '#AABBCC'; '#a1b2c3' -> '#A1B2C3'."""
    m = _HEX.match(value.strip())
    if not m:
        raise ValueError(f"{value!r} is not a #RRGGBB colour")
    digits = m.group(1)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return "#" + digits.upper()


HexColour = Annotated[str, AfterValidator(normalise_hex)]


def _palette(limit: int) -> AfterValidator:
    """Uppercase #RRGGBB colours, duplicates dropped, at most `limit` of them."""

    def check(colours: list[str]) -> list[str]:
        unique = list(dict.fromkeys(colours))
        if len(unique) > limit:
            raise ValueError(f"at most {limit} colours")
        return unique

    return AfterValidator(check)


ImagePalette = Annotated[list[HexColour], _palette(IMAGE_PALETTE_MAX)]
ElementPalette = Annotated[list[HexColour], _palette(ELEMENT_PALETTE_MAX)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Style(_Model):
    aesthetics: str = ""
    lighting: str = ""
    medium: Medium | None = None
    render: str = ""
    color_palette: ImagePalette = Field(default_factory=list)


class Element(_Model):
    type: Literal["obj", "text"] = "obj"
    box: Box | None = None
    text: str | None = None
    desc: str = ""
    color_palette: ElementPalette = Field(default_factory=list)
    # Atelier's own name for the element, kept through edits so that a three-way merge can
    # tell an edited element from another (app/captions/diff.py); never exported.
    id: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9_#-]*$")

    def __eq__(self, other: object) -> bool:
        # Two elements saying the same thing are equal whatever Atelier calls them.
        if not isinstance(other, Element):
            return NotImplemented
        return self.model_dump(exclude={"id"}) == other.model_dump(exclude={"id"})

    __hash__ = None  # type: ignore[assignment]

    @field_validator("box")
    @classmethod
    def _box(cls, v: Box | None) -> Box | None:
        if v is not None and not all(0.0 <= c <= 1.0 for c in v):
            raise ValueError("box coordinates must lie within the image")
        if v is not None and (v.x0 > v.x1 or v.y0 > v.y1):
            raise ValueError("a box's first corner must be its top-left")
        return v


class Composition(_Model):
    background: str = ""
    elements: list[Element] = Field(default_factory=list)


class Caption(_Model):
    high_level_description: str = ""
    style: Style = Field(default_factory=Style)
    composition: Composition = Field(default_factory=Composition)
