"""Field-by-field differences between two captions, as people read them."""

from __future__ import annotations

from dataclasses import dataclass

from app.captions import boxes
from app.captions.schema import Caption


@dataclass(frozen=True)
class Change:
    path: str  # e.g. "style.lighting", "elements.2.desc" (elements counted from 1)
    before: str
    after: str


def flatten(caption: Caption | None) -> dict[str, str]:
    """Every field of the caption as text, keyed by a readable path."""
    if caption is None:
        return {}
    s = caption.style
    out = {
        "high_level_description": caption.high_level_description,
        "style.aesthetics": s.aesthetics,
        "style.lighting": s.lighting,
        "style.medium": s.medium or "",
        "style.render": s.render,
        "style.color_palette": " ".join(s.color_palette),
        "background": caption.composition.background,
    }
    for n, e in enumerate(caption.composition.elements, 1):
        out[f"elements.{n}.type"] = e.type
        out[f"elements.{n}.box"] = (
            "" if e.box is None else "[" + ", ".join(map(str, boxes.to_official(e.box))) + "]"
        )
        if e.type == "text":
            out[f"elements.{n}.text"] = e.text or ""
        out[f"elements.{n}.desc"] = e.desc
        out[f"elements.{n}.color_palette"] = " ".join(e.color_palette)
    return out


def changes(before: Caption | None, after: Caption | None) -> list[Change]:
    """The fields that differ, in caption order."""
    a, b = flatten(before), flatten(after)
    keys = list(dict.fromkeys([*a, *b]))
    return [Change(k, a.get(k, ""), b.get(k, "")) for k in keys if a.get(k, "") != b.get(k, "")]


def summary(before: Caption | None, after: Caption | None, *, limit: int = 4) -> str:
    """'style.lighting, elements.2.desc and 3 more': what a revision changed."""
    paths = [c.path for c in changes(before, after)]
    if not paths:
        return "no change"
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")
