"""Reading captions in the shapes found in the wild, and writing the official dialect.

Read: the official dialect; the guide's legacy shape (`photo` key for paintings, "Oil
painting." style media, lowercase or 3-digit hex, pixel boxes); plain .txt captions.
Written: the official dialect, compact, keys in the trainer's order.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from app.captions import boxes
from app.captions.boxes import Box
from app.captions.diff import official_field_name
from app.captions.schema import (
    ELEMENT_PALETTE_MAX,
    IMAGE_PALETTE_MAX,
    MEDIA,
    Caption,
    Composition,
    Element,
    Style,
    normalise_hex,
)

BoxFormat = Literal["official", "pixel"]
TOP_KEYS = ("high_level_description", "style_description", "compositional_deconstruction")


class CaptionParseError(ValueError):
    """The text is not a caption Atelier can read; `reason` says why in one sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Reading:
    caption: Caption
    box_format: BoxFormat | None  # None: the caption has no boxes
    ambiguous: bool = False  # every coordinate <= 1000 and no format declared
    other_reading: Caption | None = None  # the pixel reading, when ambiguous
    notes: list[str] = field(default_factory=list)  # each change made while reading


def read_caption(
    raw: str,
    *,
    ext: str,
    width: int,
    height: int,
    bbox_format: BoxFormat | None = None,
) -> Reading:
    """The caption in `raw` (an AI-Toolkit .json or .txt sidecar) in canonical form."""
    if ext == "txt":
        return Reading(Caption(high_level_description=raw.strip()), box_format=None)
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, ValueError) as e:
        raise CaptionParseError(f"it is not valid JSON ({e})") from None
    except RecursionError:
        raise CaptionParseError("its JSON is nested too deeply to be a caption") from None
    if not isinstance(data, dict):
        raise CaptionParseError("its JSON is not an object with caption keys")
    return read_caption_data(data, width=width, height=height, bbox_format=bbox_format)


def read_caption_data(
    data: dict[str, Any], *, width: int, height: int, bbox_format: BoxFormat | None = None
) -> Reading:
    notes: list[str] = []
    for key in data:
        if key == "aspect_ratio":
            notes.append("dropped aspect_ratio (the trainer ignores it)")
        elif key not in TOP_KEYS:
            notes.append(f"dropped the unknown key {key!r}")
    raw_elements = _dict(data.get("compositional_deconstruction"), "compositional_deconstruction")
    raw_boxes = [
        e.get("bbox")
        for e in _list(raw_elements.get("elements"), "elements")
        if isinstance(e, dict) and e.get("bbox") is not None
    ]
    coords = [v for b in raw_boxes if isinstance(b, list) for v in b]
    detected: BoxFormat | None
    ambiguous = False
    if not raw_boxes:
        detected = None
    elif any(isinstance(v, int | float) and v > 1000 for v in coords):
        detected = "pixel"
        if bbox_format == "official":
            raise CaptionParseError(
                "its boxes have coordinates above 1000, so they are pixels, "
                "not the official 0..1000 form declared"
            )
    elif bbox_format is not None:
        detected = bbox_format
    elif (tell := _guide_tell(data)) is not None:
        detected = "pixel"
        notes.append(
            f"its boxes read as pixels of the image: the file is in the guide's shape ({tell})"
        )
    elif not _fits_as_pixels(raw_boxes, width=width, height=height):
        detected = "official"  # read as pixels, a box would leave the image
    else:
        detected, ambiguous = "official", True

    caption = _build(
        data, width=width, height=height, box_format=detected or "official", notes=notes
    )
    other = None
    if ambiguous:
        other = _build(data, width=width, height=height, box_format="pixel", notes=[])
        notes.append("its boxes could be 0..1000 or pixels: read as 0..1000 until you choose")
    return Reading(caption, detected, ambiguous, other, notes)


def _guide_tell(data: dict[str, Any]) -> str | None:
    """What shows a caption file is in the guide's legacy shape, whose boxes are pixel
    [x1, y1, x2, y2] (the guide's example 001.json): a medium that is no official token ("Oil
    painting."), a painting's technique under `photo`, or element palettes before `desc`."""
    style = data.get("style_description")
    if isinstance(style, dict):
        medium = style.get("medium")
        if isinstance(medium, str) and medium.strip() and medium not in MEDIA:
            return f"its medium {medium!r} is not an official token"
        if style.get("photo") and medium_token(str(medium or "")) not in (None, "photograph"):
            return "a painting's technique is under 'photo'"
    comp = data.get("compositional_deconstruction")
    elements = comp.get("elements") if isinstance(comp, dict) else None
    for e in elements if isinstance(elements, list) else []:
        keys = list(e) if isinstance(e, dict) else []
        if (
            "color_palette" in keys
            and "desc" in keys
            and keys.index("color_palette") < keys.index("desc")
        ):
            return "its element palettes come before their descriptions"
    return None


def _fits_as_pixels(raw_boxes: list[Any], *, width: int, height: int) -> bool:
    """Whether every box, read as pixel [x1, y1, x2, y2], lies within the image."""
    for b in raw_boxes:
        if isinstance(b, list) and len(b) == 4 and all(isinstance(v, int | float) for v in b):
            x1, y1, x2, y2 = b
            if max(x1, x2) > width or max(y1, y2) > height:
                return False
    return True


def to_official(caption: Caption) -> dict[str, Any]:
    """The official dialect: keys in the trainer's order, empty optional values left out."""
    out: dict[str, Any] = {}
    if caption.high_level_description:
        out["high_level_description"] = caption.high_level_description
    s = caption.style
    render_key = "photo" if s.medium == "photograph" else "art_style"
    order = (
        ("aesthetics", "lighting", "photo", "medium", "color_palette")
        if render_key == "photo"
        else ("aesthetics", "lighting", "medium", "art_style", "color_palette")
    )
    values = {
        "aesthetics": s.aesthetics,
        "lighting": s.lighting,
        "medium": s.medium,
        render_key: s.render,
        "color_palette": s.color_palette,
    }
    style = {k: values[k] for k in order if values.get(k)}
    if style:
        out["style_description"] = style
    elements = []
    for e in caption.composition.elements:
        el: dict[str, Any] = {"type": e.type}
        if e.box is not None:
            el["bbox"] = boxes.to_official(e.box)
        if e.type == "text":
            el["text"] = e.text or ""
        el["desc"] = e.desc
        el["color_palette"] = e.color_palette
        elements.append(el)
    out["compositional_deconstruction"] = {
        "background": caption.composition.background,
        "elements": elements,
    }
    return out


def to_trainer(caption: Caption) -> dict[str, Any]:
    """The official dialect as the trainer's normaliser leaves it: a fixed point of it.

    The normaliser drops empty palettes and empty render keys, and keeps `aesthetics` and
    `lighting` whenever they are present; Ideogram's verifier wants both present in a style
    block, so they are written (empty if need be) whenever there is one.
    """
    out = to_official(caption)
    style = out.get("style_description")
    if style is not None:
        style.setdefault("aesthetics", "")
        style.setdefault("lighting", "")
        order = [k for k in _STYLE_ORDER[caption.style.medium == "photograph"] if k in style]
        out["style_description"] = {k: style[k] for k in order}
    for el in out["compositional_deconstruction"]["elements"]:
        if not el["color_palette"]:
            del el["color_palette"]
    return out


_STYLE_ORDER = {
    True: ("aesthetics", "lighting", "photo", "medium", "color_palette"),
    False: ("aesthetics", "lighting", "medium", "art_style", "color_palette"),
}


def dumps_official(caption: Caption) -> str:
    """Compact JSON, non-ASCII kept as is, as the trainer re-serialises it."""
    return json.dumps(to_official(caption), separators=(",", ":"), ensure_ascii=False)


def medium_token(value: str) -> str | None:
    """The official medium token for a spelling found in the wild, or None."""
    s = value.strip().lower().rstrip(".").strip()
    s_ = s.replace(" ", "_").replace("-", "_")
    if s_ in MEDIA:
        return s_
    words = (
        ("3d_render", ("3d", "cgi", "render")),
        ("photograph", ("photo",)),
        ("graphic_design", ("graphic", "design", "poster", "logo", "typograph")),
        (
            "illustration",
            (
                "illustrat",
                "drawing",
                "sketch",
                "comic",
                "cartoon",
                "anime",
                "ink",
                "pencil",
                "engraving",
                "etching",
            ),
        ),
        (
            "painting",
            (
                "paint",
                "oil",
                "watercolo",
                "gouache",
                "acrylic",
                "tempera",
                "fresco",
                "canvas",
                "impasto",
            ),
        ),
    )
    for token, needles in words:
        if any(n in s for n in needles):
            return token
    return None


def _build(
    data: dict[str, Any], *, width: int, height: int, box_format: BoxFormat, notes: list[str]
) -> Caption:
    style_raw = _dict(data.get("style_description"), "style_description")
    medium_raw = style_raw.get("medium")
    medium = None
    if medium_raw not in (None, ""):
        medium = medium_token(_str(medium_raw, "medium"))
        if medium is None:
            notes.append(
                f"medium {medium_raw!r} is not one the trainer knows: left for you to pick"
            )
        elif medium != medium_raw:
            notes.append(f"medium {medium_raw!r} read as the official token {medium!r}")
    photo = _str(style_raw.get("photo", ""), "photo")
    art_style = _str(style_raw.get("art_style", ""), "art_style")
    if photo and medium not in (None, "photograph"):
        notes.append(f"the technique under 'photo' moved to 'art_style' (medium is {medium})")
    if photo and art_style:
        notes.append("both 'photo' and 'art_style' were given: kept them joined")
    aesthetics = _without_placeholder(
        _str(style_raw.get("aesthetics", ""), "aesthetics"), "aesthetics", notes
    )
    style = Style(
        aesthetics=aesthetics,
        lighting=_str(style_raw.get("lighting", ""), "lighting"),
        medium=medium,  # type: ignore[arg-type]
        render=" ".join(t for t in (art_style, photo) if t),
        color_palette=_palette(style_raw.get("color_palette"), IMAGE_PALETTE_MAX, "image", notes),
    )
    comp_raw = _dict(data.get("compositional_deconstruction"), "compositional_deconstruction")
    elements = []
    for n, e in enumerate(_list(comp_raw.get("elements"), "elements"), 1):
        e = _dict(e, f"element {n}")
        kind = e.get("type", "obj")
        if kind not in ("obj", "text"):
            raise CaptionParseError(f"element {n} has type {kind!r}; use 'obj' or 'text'")
        text = e.get("text")
        elements.append(
            Element(
                type=kind,
                box=_box(e.get("bbox"), n, box_format, width, height),
                text=_str(text, "text") if text is not None else ("" if kind == "text" else None),
                desc=_str(e.get("desc", ""), "desc"),
                color_palette=_palette(
                    e.get("color_palette"), ELEMENT_PALETTE_MAX, f"element {n}", notes
                ),
            )
        )
    try:
        return Caption(
            high_level_description=_without_placeholder(
                _str(data.get("high_level_description", ""), "high_level_description"),
                "the high-level description",
                notes,
            ),
            style=style,
            composition=Composition(
                background=_str(comp_raw.get("background", ""), "background"), elements=elements
            ),
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise CaptionParseError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def _without_placeholder(value: str, where: str, notes: list[str]) -> str:
    """The value without an Atelier export's leading trigger placeholder (the trainer fills it)."""
    for placeholder in ("[trigger]", "[name]"):
        if value.startswith(placeholder):
            notes.append(f"dropped the {placeholder} placeholder from {where}")
            return value.removeprefix(placeholder).lstrip(", ").strip()
    return value


def _box(value: Any, n: int, box_format: BoxFormat, width: int, height: int) -> Box | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) and v >= 0 for v in value)
    ):
        raise CaptionParseError(f"element {n}'s bbox is not four numbers of 0 or more")
    if box_format == "pixel":
        return boxes.from_pixels(value, width=width, height=height)
    return boxes.from_official(value)


def _palette(value: Any, limit: int, where: str, notes: list[str]) -> list[str]:
    if value is None:
        return []
    out: list[str] = []
    for v in _list(value, f"{where} color_palette"):
        try:
            colour = normalise_hex(_str(v, "color_palette"))
        except ValueError:
            notes.append(f"dropped {v!r} from the {where} palette: not a #RRGGBB colour")
            continue
        if colour not in out:
            out.append(colour)
    if len(out) > limit:
        notes.append(f"kept the first {limit} colours of the {where} palette ({len(out)} given)")
        out = out[:limit]
    return out


def _dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CaptionParseError(f"{what} should be an object, not {type(value).__name__}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise CaptionParseError(f"{what} should be a list, not {type(value).__name__}")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise CaptionParseError(f"{what} should be text, not {type(value).__name__}")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


Dialect = Literal["official", "guide"]
# Bounds on what a client may submit. The trainer reads 3,072 tokens at most (about 10,000
# characters of JSON): a field of 20,000 characters or a caption of 60,000 cannot be a caption
# anyone reviewed, and storing megabytes of it would slow every page that shows it.
MAX_FIELD_CHARS = 20_000
MAX_CAPTION_CHARS = 60_000


def read_submitted(data: Any, *, dialect: Dialect, width: int, height: int) -> Caption:
    """A caption a client sent: the official dialect strictly, or the guide's shape."""
    from app.captions.official import OfficialCaption
    from app.errors import Invalid

    _check_size(data)
    if dialect == "official":
        try:
            return OfficialCaption.model_validate(data).to_caption()
        except ValidationError as e:
            errors = [
                {
                    "field": ".".join(["caption", *(str(p) for p in err["loc"])]),
                    "label": official_field_name(err["loc"]),
                    "message": err["msg"].removeprefix("Value error, "),
                }
                for err in e.errors()
            ]
            sentence = "; ".join(f"{x['label']}: {x['message']}" for x in errors[:3])
            raise Invalid(f"The caption is not valid: {sentence}.", errors=errors) from None
    if not isinstance(data, dict):
        raise Invalid("The caption must be a JSON object.", errors=[])
    try:
        return read_caption_data(data, width=width, height=height, bbox_format="pixel").caption
    except CaptionParseError as e:
        raise Invalid(
            f"The caption is not valid: {e.reason}.",
            errors=[{"field": "caption", "message": e.reason}],
        ) from None


def read_official_text(text: str, *, width: int, height: int) -> Caption:
    """A caption from official JSON text; Invalid names the line or the fields that are wrong."""
    from app.errors import Invalid

    if not text.strip():
        raise Invalid("Nothing to save: paste or write the caption's JSON first.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise Invalid(f"This is not JSON: {e.msg} at line {e.lineno}, column {e.colno}.") from None
    return read_submitted(data, dialect="official", width=width, height=height)


def _check_size(data: Any) -> None:
    """Refuses a submitted caption with an absurdly long field, or absurdly long as a whole."""
    from app.errors import Invalid

    total = 0
    stack: list[tuple[str, Any]] = [("caption", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if len(value) > MAX_FIELD_CHARS:
                loc = [int(p) if p.isdigit() else p for p in where.split(".")[1:]]
                raise Invalid(
                    f"The caption's {official_field_name(loc)} is {len(value):,} "
                    "characters long; a field may hold "
                    f"at most {MAX_FIELD_CHARS:,} (the trainer reads about 10,000 characters of "
                    "a whole caption).",
                    errors=[{"field": where, "message": "too long"}],
                )
            total += len(value)
        elif isinstance(value, dict):
            total += sum(len(str(k)) for k in value)
            stack.extend((f"{where}.{k}", v) for k, v in value.items())
        elif isinstance(value, list):
            total += len(value)
            stack.extend((f"{where}.{n}", v) for n, v in enumerate(value))
        if total > MAX_CAPTION_CHARS:
            raise Invalid(
                f"The caption is over {MAX_CAPTION_CHARS:,} characters long; the trainer reads "
                "about 10,000 characters of a caption (3,072 tokens). Shorten it.",
                errors=[{"field": "caption", "message": "too long"}],
            )
