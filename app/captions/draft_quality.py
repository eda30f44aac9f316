"""How good the drafts were: each draft compared with the caption a person then kept.

The report answers what a user asks after two dozen reviews: which model drafts these images
better, and which fields are always rewritten. One image's comparison (`compare`):
- elements are matched one to one (scipy's assignment, the best total score): two boxed
  elements of one type score their boxes' IoU, and a pair where either has no box scores the
  similarity of their descriptions; a pair scoring under `MATCH_AT` is no match;
- boxes moved: the mean IoU of the matched pairs that both have a box (1 = none moved);
- elements added (in the kept caption only) and removed (in the draft only);
- transcriptions: the character error rate of each matched text element, Levenshtein
  distance over the kept text's length (0 = exact);
- descriptions: the edit ratio of every text field, Levenshtein distance over the longer
  text's length (0 = unchanged, 1 = rewritten whole);
- palette: for each colour of the kept image palette, the CIEDE2000 difference to the
  nearest drafted colour, averaged (0 = the same colours).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from coloraide import Color
from rapidfuzz.distance import Levenshtein
from scipy.optimize import linear_sum_assignment

from app.captions.boxes import Box
from app.captions.schema import Caption, Element

MATCH_AT = 0.3
# The caption's text fields, as a person names them.
STYLE_FIELDS = {"aesthetics": "aesthetics", "lighting": "lighting", "render": "technique"}


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when either has no area)."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter
    return inter / union if union > 0 else 0.0


def edit_ratio(before: str, after: str) -> float:
    """Levenshtein distance over the longer text's length: 0 unchanged, 1 rewritten whole."""
    return float(Levenshtein.normalized_distance(before, after))


def char_error_rate(read: str, truth: str) -> float:
    """Levenshtein distance over the true text's length (an empty truth: 0 or 1)."""
    if not truth:
        return 0.0 if not read else 1.0
    return Levenshtein.distance(read, truth) / len(truth)


def palette_distance(drafted: list[str], kept: list[str]) -> float | None:
    """Mean CIEDE2000 from each kept colour to the nearest drafted one; None if either is empty."""
    if not drafted or not kept:
        return None
    # At most 16 x 16 pairs an image: coloraide's own CIEDE2000, one pair at a time.
    ours = [Color(c) for c in drafted]
    nearest = [min(Color(k).delta_e(d, method="2000") for d in ours) for k in kept]
    return sum(nearest) / len(nearest)


def _score(a: Element, b: Element) -> float:
    if a.type != b.type:
        return 0.0
    if a.box is not None and b.box is not None:
        return iou(a.box, b.box)
    return 1.0 - edit_ratio(a.desc, b.desc)


def match_elements(drafted: list[Element], kept: list[Element]) -> list[tuple[int, int]]:
    """Pairs (draft index, kept index) of the best one-to-one matching scoring at least MATCH_AT."""
    if not drafted or not kept:
        return []
    scores = np.array([[_score(a, b) for b in kept] for a in drafted])
    rows, cols = linear_sum_assignment(scores, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if scores[r, c] >= MATCH_AT]


@dataclass
class Comparison:
    """One image's draft against the caption a person kept."""

    elements_drafted: int
    elements_kept: int
    matched: int
    added: int
    removed: int
    box_ious: list[float]
    char_error_rates: list[float]
    # field name -> edit ratio (element descriptions pooled under "element description")
    edit_ratios: dict[str, list[float]]
    palette_delta_e: float | None
    changed: set[str]

    @property
    def unchanged(self) -> bool:
        return not self.changed


def compare(*, drafted: Caption, kept: Caption) -> Comparison:
    """What a person changed in a draft (both captions as shown, the style block applied)."""
    ratios: dict[str, list[float]] = {}
    changed: set[str] = set()

    def text_field(name: str, before: str, after: str) -> None:
        ratios.setdefault(name, []).append(edit_ratio(before, after))
        if before != after:
            changed.add(name)

    text_field(
        "high-level description", drafted.high_level_description, kept.high_level_description
    )
    for key, name in STYLE_FIELDS.items():
        text_field(name, getattr(drafted.style, key), getattr(kept.style, key))
    if drafted.style.medium != kept.style.medium:
        changed.add("medium")
    text_field("background", drafted.composition.background, kept.composition.background)
    if drafted.style.color_palette != kept.style.color_palette:
        changed.add("palette")

    a, b = drafted.composition.elements, kept.composition.elements
    pairs = match_elements(a, b)
    box_ious, cers = [], []
    for i, j in pairs:
        text_field("element description", a[i].desc, b[j].desc)
        if a[i].box is not None and b[j].box is not None:
            box_ious.append(iou(a[i].box, b[j].box))  # type: ignore[arg-type]
        if a[i].box != b[j].box:
            changed.add("element box")
        if a[i].type == "text":
            cers.append(char_error_rate(a[i].text or "", b[j].text or ""))
            if (a[i].text or "") != (b[j].text or ""):
                changed.add("transcription")
        if a[i].color_palette != b[j].color_palette:
            changed.add("element palette")
    if len(pairs) < len(b):
        changed.add("elements added")
    if len(pairs) < len(a):
        changed.add("elements removed")
    return Comparison(
        elements_drafted=len(a),
        elements_kept=len(b),
        matched=len(pairs),
        added=len(b) - len(pairs),
        removed=len(a) - len(pairs),
        box_ious=box_ious,
        char_error_rates=cers,
        edit_ratios=ratios,
        palette_delta_e=palette_distance(drafted.style.color_palette, kept.style.color_palette),
        changed=changed,
    )


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


@dataclass
class GroupReport:
    """The drafts of one model, engine and prompt, against what people kept."""

    engine: str
    model: str
    prompt: str
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def images(self) -> int:
        return len(self.comparisons)

    @property
    def kept_unchanged(self) -> int:
        return sum(c.unchanged for c in self.comparisons)

    @property
    def mean_box_iou(self) -> float | None:
        return _mean(v for c in self.comparisons for v in c.box_ious)

    @property
    def added_per_image(self) -> float | None:
        return _mean(c.added for c in self.comparisons)

    @property
    def removed_per_image(self) -> float | None:
        return _mean(c.removed for c in self.comparisons)

    @property
    def mean_char_error_rate(self) -> float | None:
        return _mean(v for c in self.comparisons for v in c.char_error_rates)

    @property
    def transcriptions(self) -> int:
        return sum(len(c.char_error_rates) for c in self.comparisons)

    @property
    def mean_palette_delta_e(self) -> float | None:
        return _mean(c.palette_delta_e for c in self.comparisons if c.palette_delta_e is not None)

    def edit_ratio(self, name: str) -> float | None:
        return _mean(v for c in self.comparisons for v in c.edit_ratios.get(name, []))

    def rewritten(self) -> list[tuple[str, float]]:
        """Each field a person changed, with the share of images where they did, most first."""
        counts: dict[str, int] = {}
        for c in self.comparisons:
            for name in c.changed:
                counts[name] = counts.get(name, 0) + 1
        shares = [(name, n / self.images) for name, n in counts.items()]
        return sorted(shares, key=lambda item: (-item[1], item[0]))

    def as_dict(self) -> dict[str, object]:
        fields = [
            "high-level description",
            *STYLE_FIELDS.values(),
            "background",
            "element description",
        ]
        return {
            "engine": self.engine,
            "model": self.model,
            "prompt": self.prompt,
            "images": self.images,
            "kept_unchanged": self.kept_unchanged,
            "mean_box_iou": self.mean_box_iou,
            "elements_added_per_image": self.added_per_image,
            "elements_removed_per_image": self.removed_per_image,
            "transcriptions": self.transcriptions,
            "mean_char_error_rate": self.mean_char_error_rate,
            "edit_ratio": {
                name: self.edit_ratio(name) for name in [*fields, "element description"]
            },
            "mean_palette_delta_e": self.mean_palette_delta_e,
            "rewritten": [{"field": name, "share": share} for name, share in self.rewritten()],
        }
