"""Ideogram's caption verifier rules (docs/trainer.md section 10), as Atelier checks every export.

Each rule is written from the published rules, in our own words: a caption that breaks one is
read by Ideogram 4 as something it was not trained to expect. Lint shows the violations and
the export refuses them unless forced.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from app.captions.schema import ELEMENT_PALETTE_MAX, IMAGE_PALETTE_MAX

TOP_KEYS = ("high_level_description", "style_description", "compositional_deconstruction")
STYLE_ORDERS = (
    ("aesthetics", "lighting", "photo", "medium", "color_palette"),
    ("aesthetics", "lighting", "medium", "art_style", "color_palette"),
)
_HEX = re.compile(r"^#[0-9A-F]{6}$")
# A \\uXXXX escape of a non-ASCII character; an even run of backslashes before it is literal.
_NON_ASCII_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u(?!00[0-7][0-9a-fA-F])[0-9a-fA-F]{4}")


@dataclass(frozen=True)
class Violation:
    rule: str  # a short code, e.g. "style_incomplete"
    message: str
    severity: Literal["error", "warning"] = "error"


def verify_text(text: str) -> list[Violation]:
    """The rules a caption file's text breaks (an empty list: none)."""
    try:
        data = json.loads(text)
    except ValueError as e:
        return [Violation("not_json", f"the caption is not JSON ({e})")]
    out = verify(data)
    if _NON_ASCII_ESCAPE.search(text):
        out.append(Violation("escaped_non_ascii", "non-ASCII text is written as \\uXXXX escapes"))
    return out


def verify(data: Any) -> list[Violation]:
    """The rules a parsed caption breaks."""
    if not isinstance(data, dict):
        return [Violation("not_object", "the caption is not a JSON object")]
    out: list[Violation] = []
    extra = [k for k in data if k not in TOP_KEYS]
    if extra:
        out.append(Violation("top_keys", f"unknown top-level key(s) {', '.join(extra)}"))
    present = [k for k in data if k in TOP_KEYS]
    if present != [k for k in TOP_KEYS if k in data]:
        out.append(Violation("top_order", "top-level keys are out of order"))
    hld = data.get("high_level_description")
    if hld is not None and not isinstance(hld, str):
        out.append(Violation("hld_type", "high_level_description is not text"))
    if "style_description" in data:
        out += _style(data["style_description"])
    if "compositional_deconstruction" not in data:
        out.append(Violation("composition_missing", "compositional_deconstruction is missing"))
    else:
        out += _composition(data["compositional_deconstruction"])
    return out


def _style(style: Any) -> list[Violation]:
    if not isinstance(style, dict):
        return [Violation("style_type", "style_description is not an object")]
    out: list[Violation] = []
    renders = [k for k in ("photo", "art_style") if k in style]
    if len(renders) != 1:
        out.append(
            Violation(
                "style_render",
                "the style block needs exactly one of photo / art_style "
                f"(it has {' and '.join(renders) or 'neither'}): set the medium and the "
                "technique in the style block",
            )
        )
    order = STYLE_ORDERS[0] if "photo" in style else STYLE_ORDERS[1]
    unknown = [k for k in style if k not in order]
    if unknown:
        out.append(Violation("style_keys", f"unknown style key(s) {', '.join(unknown)}"))
    missing = [k for k in order if k != "color_palette" and k not in style]
    missing = [k for k in missing if k not in ("photo", "art_style")]  # said above
    if missing:
        out.append(
            Violation(
                "style_incomplete",
                f"the style block lacks {', '.join(missing)}: fill the dataset's style block "
                "(or this caption's)",
            )
        )
    known = [k for k in style if k in order]
    if known != [k for k in order if k in style]:
        out.append(Violation("style_order", f"style keys are out of order: {', '.join(known)}"))
    for key in ("aesthetics", "lighting", "photo", "medium", "art_style"):
        if key in style and not isinstance(style[key], str):
            out.append(Violation("style_type", f"style {key} is not text"))
    if "color_palette" in style:
        out += _palette(style["color_palette"], IMAGE_PALETTE_MAX, "the image palette")
    return out


def _composition(comp: Any) -> list[Violation]:
    if not isinstance(comp, dict):
        return [Violation("composition_type", "compositional_deconstruction is not an object")]
    out: list[Violation] = []
    keys = list(comp)
    if "background" not in comp or not isinstance(comp["background"], str):
        out.append(Violation("background_missing", "background (text) is missing"))
    if "elements" not in comp or not isinstance(comp["elements"], list):
        out.append(Violation("elements_missing", "elements (a list) is missing"))
        return out
    if keys != ["background", "elements"]:
        out.append(
            Violation(
                "composition_keys",
                f"compositional_deconstruction holds {', '.join(keys)}, not background, elements",
            )
        )
    if not comp["elements"]:
        # Some verifier versions want at least one element; others accept none.
        out.append(Violation("no_elements", "the caption has no elements", "warning"))
    for n, el in enumerate(comp["elements"], 1):
        out += _element(el, n)
    return out


def _element(el: Any, n: int) -> list[Violation]:
    if not isinstance(el, dict):
        return [Violation("element_type", f"element {n} is not an object")]
    out: list[Violation] = []
    kind = el.get("type")
    if kind not in ("obj", "text"):
        out.append(Violation("element_type", f"element {n}'s type is {kind!r}, not obj or text"))
        return out
    order = ["type", "bbox", "text", "desc", "color_palette"]
    if kind == "obj":
        order.remove("text")
    required = ["type", "desc"] + (["text"] if kind == "text" else [])
    missing = [k for k in required if k not in el]
    if missing:
        out.append(Violation("element_keys", f"element {n} lacks {', '.join(missing)}"))
    unknown = [k for k in el if k not in order]
    if unknown:
        out.append(Violation("element_keys", f"element {n} has key(s) {', '.join(unknown)}"))
    known = [k for k in el if k in order]
    if known != [k for k in order if k in el]:
        out.append(Violation("element_order", f"element {n}'s keys are out of order"))
    for key in ("text", "desc"):
        if key in el and not isinstance(el[key], str):
            out.append(Violation("element_type", f"element {n}'s {key} is not text"))
    if "bbox" in el:
        out += _bbox(el["bbox"], n)
    if "color_palette" in el:
        out += _palette(el["color_palette"], ELEMENT_PALETTE_MAX, f"element {n}'s palette")
    return out


def _bbox(box: Any, n: int) -> list[Violation]:
    if (
        not isinstance(box, list)
        or len(box) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in box)
        or not all(0 <= v <= 1000 for v in box)
    ):
        return [Violation("bbox_range", f"element {n}'s bbox is not four integers in 0..1000")]
    y0, x0, y1, x1 = box
    if y0 > y1 or x0 > x1:
        return [Violation("bbox_order", f"element {n}'s bbox is not [y_min, x_min, y_max, x_max]")]
    return []


def _palette(colours: Any, limit: int, where: str) -> list[Violation]:
    if not isinstance(colours, list):
        return [Violation("palette", f"{where} is not a list")]
    out = []
    if len(colours) > limit:
        out.append(Violation("palette", f"{where} holds {len(colours)} colours, over {limit}"))
    bad = [c for c in colours if not (isinstance(c, str) and _HEX.match(c))]
    if bad:
        out.append(Violation("palette", f"{where} holds {bad[0]!r}, not an uppercase #RRGGBB"))
    return out
