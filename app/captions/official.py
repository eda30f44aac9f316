"""The official Ideogram 4 dialect as strict pydantic models, for validating what clients send.

The same models give the JSON schema the drafting engine constrains its output to. Reading
lenient, legacy or guide-shaped files is dialects.py's job; this is the exact wire shape.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.captions import boxes
from app.captions.schema import (
    Caption,
    Composition,
    Element,
    ElementPalette,
    ImagePalette,
    Medium,
    Style,
)

Coordinate = Annotated[int, Field(ge=0, le=boxes.OFFICIAL_SCALE)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OfficialStyle(_Strict):
    aesthetics: str = ""
    lighting: str = ""
    photo: str | None = None
    medium: Medium | None = None
    art_style: str | None = None
    color_palette: ImagePalette = Field(default_factory=list)

    @model_validator(mode="after")
    def _render_key(self) -> OfficialStyle:
        if self.medium == "photograph" and self.art_style:
            raise ValueError("a photograph's technique goes under 'photo', not 'art_style'")
        if self.medium not in (None, "photograph") and self.photo:
            raise ValueError(f"a {self.medium}'s technique goes under 'art_style', not 'photo'")
        return self


class OfficialElement(_Strict):
    type: Literal["obj", "text"]
    bbox: Annotated[list[Coordinate], Field(min_length=4, max_length=4)] | None = None
    text: str | None = None
    desc: str = ""
    color_palette: ElementPalette = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> OfficialElement:
        if self.bbox is not None:
            y0, x0, y1, x1 = self.bbox
            if y0 > y1 or x0 > x1:
                raise ValueError("bbox is [y_min, x_min, y_max, x_max]: a minimum exceeds its max")
        if self.type == "text" and self.text is None:
            raise ValueError("a text element needs 'text', the exact transcription")
        if self.type == "obj" and self.text is not None:
            raise ValueError("only text elements carry 'text'; describe objects in 'desc'")
        return self


class OfficialComposition(_Strict):
    background: str = ""
    elements: list[OfficialElement] = Field(default_factory=list)


class OfficialCaption(_Strict):
    high_level_description: str = ""
    style_description: OfficialStyle | None = None
    compositional_deconstruction: OfficialComposition
    aspect_ratio: Any = Field(default=None, description="Accepted and dropped, as the trainer does")

    def to_caption(self) -> Caption:
        s = self.style_description or OfficialStyle()
        return Caption(
            high_level_description=self.high_level_description,
            style=Style(
                aesthetics=s.aesthetics,
                lighting=s.lighting,
                medium=s.medium,
                render=(s.photo or s.art_style or ""),
                color_palette=s.color_palette,
            ),
            composition=Composition(
                background=self.compositional_deconstruction.background,
                elements=[
                    Element(
                        type=e.type,
                        box=boxes.from_official(e.bbox) if e.bbox is not None else None,
                        text=e.text,
                        desc=e.desc,
                        color_palette=e.color_palette,
                    )
                    for e in self.compositional_deconstruction.elements
                ],
            ),
        )
