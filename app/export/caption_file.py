"""The text of an exported caption file: what the trainer's loader and normaliser read.

Facts (docs/trainer.md sections 1 and 2): the loader reads the file as text, splits it on
',' and rejoins it
with ', ', replaces [trigger] / [name] with the trigger word, and prepends the word when it
appears nowhere; the ideogram4 model then parses text starting with '{' as JSON, normalises it
and re-serialises it compactly. Written so that the text the encoder receives is the caption.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from app.captions import boxes
from app.captions.dialects import to_trainer
from app.captions.schema import Caption

Dialect = Literal["official", "guide"]
TriggerPlacement = Literal["aesthetics", "prefix", "none"]
PLACEHOLDER = "[trigger]"


def caption_text(
    caption: Caption,
    *,
    dialect: Dialect,
    placement: TriggerPlacement,
    width: int,
    height: int,
) -> str:
    """The caption file's text: compact JSON, with the trigger placeholder where asked.

    Where the trainer parses the caption as JSON (no prefix), every comma inside a string is
    written as the escape \\u002c: the loader splits the text on ',' and rejoins it with ', ',
    which would give each such comma a space; json.loads reads the escape back as a comma.
    In prefix mode the text never reaches json.loads, so the escape would reach the encoder.
    """
    data = to_trainer(caption) if dialect == "official" else to_guide(caption, width, height)
    if placement == "aesthetics":
        data = with_placeholder(data)
    return compact(data, escape_commas=placement != "prefix")


def with_placeholder(data: dict[str, Any]) -> dict[str, Any]:
    """The caption with [trigger] at the start of its aesthetics or, with no style block, of
    its high-level description (a style block of aesthetics alone breaks Ideogram's rules)."""
    data = dict(data)
    if "style_description" in data:
        style = dict(data["style_description"])
        style["aesthetics"] = _prefixed(style.get("aesthetics", ""))
        data["style_description"] = style
        return data
    rest = {k: v for k, v in data.items() if k != "high_level_description"}
    return {"high_level_description": _prefixed(data.get("high_level_description", "")), **rest}


def _prefixed(value: str) -> str:
    return f"{PLACEHOLDER}, {value}" if value else PLACEHOLDER


def compact(data: Any, *, escape_commas: bool) -> str:
    """JSON as the trainer re-serialises it (',' and ':' separators, non-ASCII as is), with
    commas inside strings written as \\u002c when asked."""
    if isinstance(data, dict):
        items = (
            f"{json.dumps(k, ensure_ascii=False)}:{compact(v, escape_commas=escape_commas)}"
            for k, v in data.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(data, list):
        return "[" + ",".join(compact(v, escape_commas=escape_commas) for v in data) + "]"
    text = json.dumps(data, ensure_ascii=False)
    # Inside a JSON string literal a ',' is never part of an escape: replacing it is exact.
    return text.replace(",", "\\u002c") if escape_commas and isinstance(data, str) else text


def to_guide(caption: Caption, width: int, height: int) -> dict[str, Any]:
    """The guide's dialect: the official keys, but boxes as pixel [x1, y1, x2, y2]."""
    data = to_trainer(caption)
    elements = data["compositional_deconstruction"]["elements"]
    for el, e in zip(elements, caption.composition.elements, strict=True):
        if e.box is not None:
            el["bbox"] = boxes.to_pixels(e.box, width=width, height=height)
    return data
