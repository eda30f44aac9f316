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


# The parts a conflict is merged by: each top-level and style field, and the element list
# as a whole (elements have no identity across versions to merge them one by one).
MERGE_PARTS = (
    "high_level_description",
    "style.aesthetics",
    "style.lighting",
    "style.medium",
    "style.render",
    "style.color_palette",
    "background",
    "elements",
)


def part_of(path: str) -> str:
    return "elements" if path.startswith("elements.") else path


def merge(mine: Caption, theirs: Caption, *, keep_mine: set[str]) -> Caption:
    """Their caption with the parts named in `keep_mine` taken from mine."""
    style = {
        k: getattr(mine.style, k)
        for k in ("aesthetics", "lighting", "medium", "render", "color_palette")
        if f"style.{k}" in keep_mine
    }
    composition: dict[str, object] = {}
    if "background" in keep_mine:
        composition["background"] = mine.composition.background
    if "elements" in keep_mine:
        composition["elements"] = mine.composition.elements
    top = {}
    if "high_level_description" in keep_mine:
        top["high_level_description"] = mine.high_level_description
    return theirs.model_copy(
        update={
            **top,
            "style": theirs.style.model_copy(update=style),
            "composition": theirs.composition.model_copy(update=composition),
        }
    )
