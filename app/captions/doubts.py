"""A draft's own doubts, kept with the drafted revision and shown to the reviewer: how sure the
model was of each field and element (token probabilities, app/engines/confidence.py), and
each text element's second reading (its box read again alone) where it differs.

Elements are named by their id, which they keep through every edit (app/captions/diff.py),
so a doubt follows its element when others are added, removed or reordered. A doubt is shown
only while the part it is about still reads as drafted: a field a person rewrote, or a box
they moved, is theirs now.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from app.captions.diff import field_name
from app.captions.draft_quality import char_error_rate
from app.captions.schema import Caption

UNSURE_BELOW = 0.5  # a value whose least likely token was less likely than this is marked
DIFFERS_ABOVE = 0.1  # a second reading further than this (character error rate) is flagged
# The fields a confidence is kept for (app/engines/confidence.py), and their place in
# app/captions/diff.py's naming, which names every field the one way a person reads it.
FIELDS = {
    "high_level_description": "high_level_description",
    "style.aesthetics": "style.aesthetics",
    "style.lighting": "style.lighting",
    "style.medium": "style.medium",
    "style.render": "style.render",
    "composition.background": "background",
}


@dataclass
class Reading:
    drafted: str
    read: str | None  # None: the second reading failed
    cer: float

    @property
    def differs(self) -> bool:
        if self.read is None:
            return False
        if not self.drafted.strip() or not self.read.strip():
            return self.drafted.strip() != self.read.strip()
        return self.cer > DIFFERS_ABOVE


@dataclass
class Doubts:
    # path -> {"least", "mean", "tokens"}; element paths by id: "element:<id>" and
    # "element:<id>.desc" / ".text" / ".box" / ".type"
    confidence: dict[str, dict[str, float]] = field(default_factory=dict)
    readings: dict[str, Reading] = field(default_factory=dict)  # element id -> reading

    def to_json(self) -> str:
        return json.dumps(
            {
                "confidence": self.confidence,
                "readings": {k: asdict(v) for k, v in self.readings.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> Doubts | None:
        if not text:
            return None
        data = json.loads(text)
        return cls(
            confidence=data.get("confidence", {}),
            readings={k: Reading(**v) for k, v in data.get("readings", {}).items()},
        )

    @property
    def least(self) -> float | None:
        return min((c["least"] for c in self.confidence.values()), default=None)


def build(
    *,
    stored: Caption,
    confidence: dict[str, Any] | None,
    readings: dict[int, str | None] | None,
) -> Doubts | None:
    """The doubts of a draft as stored (its elements carrying their ids), from the engine's
    confidences (paths by element index) and the second readings (by element index)."""
    if not confidence and not readings:
        return None
    ids = [e.id for e in stored.composition.elements]
    out = Doubts()
    for path, c in (confidence or {}).items():
        figures = c.as_dict() if hasattr(c, "as_dict") else dict(c)
        if path.startswith("elements."):
            _, index, *part = path.split(".")
            i = int(index)
            if i >= len(ids):
                continue
            path = f"element:{ids[i]}" + (f".{part[0]}" if part else "")
        out.confidence[path] = figures
    for i, read in (readings or {}).items():
        element = stored.composition.elements[i]
        drafted = element.text or ""
        cer = char_error_rate(read, drafted) if read is not None else 0.0
        out.readings[element.id] = Reading(drafted=drafted, read=read, cer=cer)
    return out


@dataclass
class Shown:
    """One doubt as the editor shows it."""

    where: str  # as a person names it: "lighting", "element 3 · box"
    target: str  # what to mark: a field name, or "element:<id>[.part]"
    least: float
    mean: float


def shown(doubts: Doubts | None, *, drafted: Caption, now: Caption) -> list[Shown]:
    """The unsure parts that still read as drafted, least sure first."""
    if doubts is None:
        return []
    out: list[Shown] = []
    positions = {e.id: n for n, e in enumerate(now.composition.elements, start=1)}
    before = {e.id: e for e in drafted.composition.elements}
    after = {e.id: e for e in now.composition.elements}
    for path, c in doubts.confidence.items():
        if c["least"] >= UNSURE_BELOW:
            continue
        if path.startswith("element:"):
            eid, _, part = path.removeprefix("element:").partition(".")
            if eid not in after or eid not in before:
                continue
            a, b = before[eid], after[eid]
            if part and _part(a, part) != _part(b, part):
                continue
            if not part and a != b:
                continue
            label = field_name(f"elements.{positions[eid]}" + (f".{part}" if part else ""))
            out.append(Shown(label, path, c["least"], c["mean"]))
        elif path in FIELDS and _field(drafted, path) == _field(now, path):
            out.append(Shown(field_name(FIELDS[path]), path, c["least"], c["mean"]))
    # An element whose field or box is listed needs no line of its own besides.
    parts = {
        s.target.partition(".")[0]
        for s in out
        if s.target.startswith("element:") and "." in s.target
    }
    out = [s for s in out if not (s.target.startswith("element:") and s.target in parts)]
    return sorted(out, key=lambda s: s.least)


def readings_that_differ(doubts: Doubts | None, *, now: Caption) -> list[tuple[int, Reading]]:
    """(element number, reading) for each text element whose transcription is still the
    drafted one and whose second reading differs from it."""
    if doubts is None:
        return []
    out = []
    for n, e in enumerate(now.composition.elements, start=1):
        reading = doubts.readings.get(e.id)
        if reading is not None and reading.differs and (e.text or "") == reading.drafted:
            out.append((n, reading))
    return out


def _part(element: Any, part: str) -> Any:
    return getattr(element, part, None)


def _field(caption: Caption, path: str) -> Any:
    value: Any = caption
    for key in path.split("."):
        value = getattr(value, {"composition": "composition", "style": "style"}.get(key, key))
    return value
