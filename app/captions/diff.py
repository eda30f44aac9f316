"""Field-by-field differences between captions, and the three-way merge of two edits."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.captions import boxes
from app.captions.schema import Caption, Element, Style


@dataclass(frozen=True)
class Change:
    path: str  # e.g. "style.lighting", "elements.2.desc" (elements counted from 1)
    before: str
    after: str

    @property
    def label(self) -> str:
        return field_name(self.path)


# A caption's fields as people read them, the same in the editor's errors, the raw JSON's,
# find and replace, merges and the history: elements counted from 1, named by what the editor
# calls them ("element 3 · description").
_NAMES = {
    "high_level_description": "high-level description",
    "style": "style",
    "style.aesthetics": "style · aesthetics",
    "style.lighting": "style · lighting",
    "style.medium": "style · medium",
    "style.render": "style · art style",
    "style.color_palette": "style · palette",
    "background": "background",
    "elements": "elements",
    "elements.order": "order of the elements",
}
_ELEMENT_FIELDS = {
    "type": "type",
    "box": "box",
    "text": "text",
    "desc": "description",
    "color_palette": "palette",
}
# The official dialect's keys (and a form's) for the same fields.
_OFFICIAL = {
    "style_description": "style",
    "compositional_deconstruction": "",
    "art_style": "render",
    "photo": "render",
    "bbox": "box",
    "palette": "color_palette",
}


def field_name(path: str) -> str:
    """'elements.3.desc' -> 'element 3 · description': a field as a person reads it."""
    if path in _NAMES:
        return _NAMES[path]
    parts = path.split(".")
    if parts[0] == "elements" and len(parts) >= 2:
        name = f"element {parts[1]}"
        if len(parts) >= 3:
            name += " · " + _ELEMENT_FIELDS.get(parts[2], parts[2])
        return name
    return " · ".join(parts)


def official_field_name(loc: tuple[str | int, ...] | list[str | int]) -> str:
    """A field named by a validator's location in the official dialect (elements counted
    from 0, official keys), as field_name names it."""
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            if parts and parts[-1] == "elements":
                parts.append(str(p + 1))
            continue  # a colour's place in a palette, a coordinate's in a box
        key = _OFFICIAL.get(p, p)
        if key:
            parts.append(key)
        if len(parts) >= 4 or (parts and parts[0] != "elements" and len(parts) >= 2):
            break
    if not parts:
        return " · ".join(str(p) for p in loc) or "caption"
    return field_name(".".join(parts))


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
    """'style · lighting, element 2 · description and 3 more': what a revision changed."""
    paths = [c.label for c in changes(before, after)]
    if not paths:
        return "no change"
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


# Merging two edits of one caption from the revision both started from (the base): a part
# changed on one side only is taken from that side; a part both changed, differently, is a
# conflict that only a person (or `keep_mine`) decides. Parts are the top-level and style
# fields, each field of an element (elements are told apart by their `id`, kept through
# edits), an element's presence (removed on one side, edited on the other), and the order.
STYLE_KEYS = ("aesthetics", "lighting", "medium", "render", "color_palette")
ELEMENT_KEYS = ("type", "box", "text", "desc", "color_palette")
ORDER = "elements.order"


@dataclass(frozen=True)
class Part:
    """One part both sides changed differently, as text for people to choose from."""

    key: str  # e.g. "background", "elements.<id>.desc", "elements.<id>", "elements.order"
    label: str  # e.g. "background", "element 2 · description" (field_name's)
    base: str
    mine: str
    theirs: str


@dataclass(frozen=True)
class Merged:
    caption: Caption  # conflicts settled as `keep_mine` says, theirs otherwise
    conflicts: list[Part]
    from_mine: list[str] = field(default_factory=list)  # labels taken from mine unasked
    from_theirs: list[str] = field(default_factory=list)  # labels taken from theirs unasked


def new_element_id() -> str:
    return secrets.token_hex(6)


def identify(caption: Caption, *, like: Caption | None) -> Caption:
    """The caption with every element named: as given, else as the same element in `like`."""
    # An element without an id (from the API, a sidecar, the model, an older revision) takes
    # the id of an unclaimed element of `like` saying exactly the same thing, else of the
    # unclaimed one at its place in order, else a new one.
    elements = caption.composition.elements
    # An id given twice names the first of them only: two elements are never merged as one.
    ids: list[str] = []
    for e in elements:
        ids.append(e.id if e.id and e.id not in ids else "")
    if all(ids):
        return caption
    known = like.composition.elements if like is not None else []
    claimed = set(ids) - {""}
    free = [e for e in known if e.id and e.id not in claimed]
    for n, e in enumerate(elements):
        if not ids[n]:
            same = next((k for k in free if k == e), None)
            if same is not None:
                ids[n] = same.id
                free.remove(same)
    for n in range(len(elements)):
        if not ids[n] and free:
            ids[n] = free.pop(0).id
    ids = [i or new_element_id() for i in ids]
    named = [e.model_copy(update={"id": i}) for e, i in zip(elements, ids, strict=True)]
    return caption.model_copy(
        update={"composition": caption.composition.model_copy(update={"elements": named})}
    )


def _numbered(caption: Caption) -> Caption:
    """The base caption with unnamed elements named by their place (older revisions)."""
    seen: set[str] = set()
    elements = []
    for n, e in enumerate(caption.composition.elements, 1):
        elements.append(e if e.id and e.id not in seen else e.model_copy(update={"id": f"#{n}"}))
        seen.add(elements[-1].id)
    return caption.model_copy(
        update={"composition": caption.composition.model_copy(update={"elements": elements})}
    )


def _element_text(e: Element | None) -> str:
    if e is None:
        return "(removed)"
    words = [e.type, _field_text(e, "box")]
    if e.type == "text":
        words.append(repr(e.text or ""))
    words += [e.desc, " ".join(e.color_palette)]
    return " · ".join(w for w in words if w)


def _field_text(e: Element, key: str) -> str:
    value = getattr(e, key)
    if key == "box":
        return "" if value is None else "[" + ", ".join(map(str, boxes.to_official(value))) + "]"
    if key == "color_palette":
        return " ".join(value)
    return "" if value is None else str(value)


class _Picker:
    """Takes each part from the side that changed it, and records what it could not."""

    def __init__(self, keep_mine: frozenset[str]) -> None:
        self.keep_mine = keep_mine
        self.conflicts: list[Part] = []
        self.from_mine: list[str] = []
        self.from_theirs: list[str] = []

    def __call__(
        self, key: str, label: str, b: Any, m: Any, t: Any, text: Callable[[Any], str]
    ) -> Any:
        if m == t:
            return t
        if m == b:
            self.from_theirs.append(label)
            return t
        if t == b:
            self.from_mine.append(label)
            return m
        self.conflicts.append(Part(key, label, text(b), text(m), text(t)))
        return m if key in self.keep_mine else t


def _plain(v: Any) -> str:
    if isinstance(v, list):
        return " ".join(map(str, v))
    return "" if v is None else str(v)


def _texter(key: str) -> Callable[[Any], str]:
    return lambda v: _field_text(Element.model_construct(**{key: v}), key)


def merge3(
    *, base: Caption, mine: Caption, theirs: Caption, keep_mine: frozenset[str] = frozenset()
) -> Merged:
    """Both edits of `base` in one caption; parts both changed differently are conflicts."""
    base = _numbered(base)
    mine, theirs = identify(mine, like=base), identify(theirs, like=base)
    pick = _Picker(keep_mine)
    description = pick(
        "high_level_description",
        field_name("high_level_description"),
        base.high_level_description,
        mine.high_level_description,
        theirs.high_level_description,
        _plain,
    )
    style = Style.model_validate(
        {
            k: pick(
                f"style.{k}",
                field_name(f"style.{k}"),
                getattr(base.style, k),
                getattr(mine.style, k),
                getattr(theirs.style, k),
                _plain,
            )
            for k in STYLE_KEYS
        }
    )
    background = pick(
        "background",
        field_name("background"),
        base.composition.background,
        mine.composition.background,
        theirs.composition.background,
        _plain,
    )
    elements = _merge_elements(base, mine, theirs, pick)
    order = _merge_order(base, mine, theirs, elements, pick)
    caption = Caption(
        high_level_description=description,
        style=style,
        composition=theirs.composition.model_copy(
            update={"background": background, "elements": [elements[i] for i in order]}
        ),
    )
    return Merged(caption, pick.conflicts, pick.from_mine, pick.from_theirs)


def _by_id(caption: Caption) -> dict[str, Element]:
    return {e.id: e for e in caption.composition.elements}


def _label(n: int | None, key: str = "") -> str:
    return field_name(f"elements.{n or '?'}" + (f".{key}" if key else ""))


def _merge_elements(
    base: Caption, mine: Caption, theirs: Caption, pick: _Picker
) -> dict[str, Element]:
    """The merged elements that survive, by id."""
    b, m, t = _by_id(base), _by_id(mine), _by_id(theirs)
    place = {e.id: n for n, e in enumerate(theirs.composition.elements, 1)}
    for n, e in enumerate(mine.composition.elements, 1):
        place.setdefault(e.id, n)
    out: dict[str, Element] = {}
    for eid in dict.fromkeys([*b, *t, *m]):
        be, me, te = b.get(eid), m.get(eid), t.get(eid)
        if me is None or te is None:
            # Removed on one side at least: the element's presence is the part.
            label = _label(place.get(eid))
            kept = pick(f"elements.{eid}", label, be, me, te, _element_text)
            if kept is not None:
                out[eid] = kept
            continue
        fields = {
            k: pick(
                f"elements.{eid}.{k}",
                _label(place.get(eid), k),
                getattr(be, k) if be is not None else None,
                getattr(me, k),
                getattr(te, k),
                _texter(k),
            )
            for k in ELEMENT_KEYS
        }
        merged = Element.model_validate({**fields, "id": eid})
        if merged.type != "text":
            merged = merged.model_copy(update={"text": None})
        out[eid] = merged
    return out


def _merge_order(
    base: Caption, mine: Caption, theirs: Caption, merged: dict[str, Element], pick: _Picker
) -> list[str]:
    """Theirs' order (mine's if only mine reordered); additions stay after what they followed."""
    shared = set(_by_id(base)) & set(_by_id(mine)) & set(_by_id(theirs)) & set(merged)

    def common(c: Caption) -> list[str]:
        return [e.id for e in c.composition.elements if e.id in shared]

    b, m, t = common(base), common(mine), common(theirs)

    def places(ids: Any) -> str:
        return ", ".join(str(b.index(i) + 1) for i in ids)

    order: list[str] = list(pick(ORDER, field_name(ORDER), b, m, t, places))
    lead, other = (mine, theirs) if order == m and m != t else (theirs, mine)
    for side in (lead, other):
        ids = [e.id for e in side.composition.elements if e.id in merged]
        for n, eid in enumerate(ids):
            if eid in order:
                continue
            before = [i for i in ids[:n] if i in order]
            at = order.index(before[-1]) + 1 if before else 0
            # The other side's additions go after the leading side's ones at that place.
            while side is other and at < len(order) and order[at] not in shared:
                at += 1
            order.insert(at, eid)
    return order
