"""Readiness lint: what stops a dataset from training well, before it is exported.

Errors stop an export (unless forced); warnings are listed with it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from sqlmodel import Session

from app.captions import doubts, revisions
from app.captions.dialects import dumps_official, to_trainer
from app.captions.schema import Caption
from app.captions.style_block import block_of, effective, field_states
from app.export import profiles
from app.export.caption_file import caption_text
from app.export.verifier import verify_text
from app.images import buckets, catalog
from app.images.transparency import BACKGROUND_NAME, transparency_effect
from app.models import CaptionStatus, Dataset, Flag, Image

Severity = Literal["error", "warning"]
MIN_IMAGES = 30
TOKEN_BUDGET = 3072  # the trainer truncates captions there (Qwen3-VL text encoder)
CHARS_PER_TOKEN = 3.2  # a cautious estimate for English JSON with a Qwen tokenizer
TEXT_ENCODER = "Qwen/Qwen3-VL-8B-Instruct"


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    """The text encoder's tokenizer if it is in the Hugging Face cache, else None.

    Read with `tokenizers` straight from the cached tokenizer.json: importing transformers
    would cost seconds on every export.
    """
    try:
        from huggingface_hub import try_to_load_from_cache
        from tokenizers import Tokenizer

        path = try_to_load_from_cache(TEXT_ENCODER, "tokenizer.json")
        return Tokenizer.from_file(path) if isinstance(path, str) else None
    except Exception:  # not installed or unreadable: estimate instead
        return None


def count_tokens(text: str) -> tuple[int, bool]:
    """Tokens of a caption for the trainer's text encoder, and whether that is exact."""
    tok = _tokenizer()
    if tok is not None:
        return len(tok.encode(text).ids), True
    return round(len(text) / CHARS_PER_TOKEN), False


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str
    image: str | None  # file name, None for the dataset as a whole
    message: str
    image_id: int | None = None

    def as_dict(self) -> dict:
        return {
            "severity": self.severity,
            "code": self.code,
            "image": self.image,
            "image_id": self.image_id,
            "message": self.message,
        }


def verifier_findings(img: Image, text: str) -> list[Finding]:
    """Ideogram's caption rules the exported text of `img`'s caption breaks, as findings."""
    return [
        Finding(
            v.severity,
            f"verifier_{v.rule}",
            img.filename,
            f"breaks Ideogram's caption rules: {v.message}",
            img.id,
        )
        for v in verify_text(text)
    ]


@dataclass(frozen=True)
class Subject:
    """What the image rules read: one image, as it would be exported."""

    img: Image
    dataset: Dataset
    block: dict[str, str]  # the dataset's style block, the fields that hold a value
    stored: Caption  # its head caption as saved
    caption: Caption  # with the dataset's style block filled in
    text: str  # the caption in the official dialect, placement aside
    exported: str  # the caption file's text as the export writes it
    placement: str
    trained_at: list[int]  # the resolutions the profile trains at
    flags: list[Flag]
    doubts: doubts.Doubts | None  # the newest draft's (app/captions/doubts.py)


@dataclass
class Tally:
    """What the dataset rules read, counted over its images."""

    profile: str
    resolution: int
    placement: str
    trigger: str
    block: dict[str, str]
    images: int = 0
    captioned: int = 0
    sizes: list[tuple[int, int]] = field(default_factory=list)  # the captioned images'
    without_palette: int = 0  # captions with no image palette
    with_commas: int = 0  # captions holding commas (counted with the trigger prefixed)
    shapes: Counter[tuple[int, ...]] = field(default_factory=Counter)

    def count(self, img: Image, stored: Caption, caption: Caption) -> None:
        """Adds one captioned image (`caption`: with the style block filled in)."""
        self.captioned += 1
        self.sizes.append((img.width, img.height))
        self.without_palette += not stored.style.color_palette
        if self.placement == "prefix" and "," in "".join(_strings(to_trainer(caption))):
            self.with_commas += 1
        self.shapes[_shape(caption)] += 1


@dataclass(frozen=True)
class Rule:
    """A lint rule: its severity, and a check yielding one message per problem it finds (or,
    for the verifier's rules, whole findings with their own codes and severities)."""

    severity: Severity
    check: Callable[[Any], Iterable[str | Finding]]


def _missing_caption(img: Image) -> Iterator[str]:
    why = f" (its caption file could not be read: {img.caption_error})"
    yield f"has no caption{why if img.caption_error else ''}"


def _degenerate_box(s: Subject) -> Iterator[str]:
    for n, e in enumerate(s.caption.composition.elements, 1):
        if e.box is not None and e.box.is_degenerate:
            yield f"element {n}'s box has no area"


def _empty_text(s: Subject) -> Iterator[str]:
    for n, e in enumerate(s.caption.composition.elements, 1):
        if e.type == "text" and not (e.text or "").strip():
            yield f"element {n} is a text element with no text"


def _trigger_in_caption(s: Subject) -> Iterator[str]:
    trigger = s.dataset.trigger_word.strip().lower()
    if trigger and trigger in s.text.lower():
        yield (
            f"the trigger word {s.dataset.trigger_word!r} is written in the caption; the "
            "export places it for the trainer"
        )


def _placeholder_in_caption(s: Subject) -> Iterator[str]:
    if placeholders := [p for p in ("[trigger]", "[name]") if p in s.text]:
        yield (
            f"the caption holds {' and '.join(placeholders)}, which the trainer replaces "
            "with the trigger word wherever it appears: reword it"
        )


def _not_approved(s: Subject) -> Iterator[str]:
    if s.img.status != CaptionStatus.approved:
        yield f"caption is {CaptionStatus(s.img.status).label}"


def _weak_approved(s: Subject) -> Iterator[str]:
    if s.img.status != CaptionStatus.approved:
        return
    if (weak := revisions.weakness(s.caption)) is not None:
        yield f"is approved, but {weak}"


def _style_drift(s: Subject) -> Iterator[str]:
    states = field_states(s.stored, s.block)
    if overridden := [k for k, v in states.items() if v == "overridden"]:
        yield f"overrides the dataset's style block ({', '.join(overridden)})"


def _caption_too_long(s: Subject) -> Iterator[str]:
    tokens, exact = count_tokens(s.text)
    if tokens > TOKEN_BUDGET:
        yield (
            f"{'' if exact else 'about '}{tokens} tokens; the trainer's text encoder reads "
            f"{TOKEN_BUDGET} and cuts the rest off: shorten it"
        )


def _ambiguous_boxes(s: Subject) -> Iterator[str]:
    if s.img.boxes_ambiguous:
        yield (
            "its boxes were read as 0..1000 but could be pixels: choose the format on "
            "the dataset page; read the wrong way, every box is misplaced"
        )


def _second_reading(s: Subject) -> Iterator[str]:
    for n, reading in doubts.readings_that_differ(s.doubts, now=s.stored):
        yield (
            f"element {n}'s text was read differently from its box alone: the draft says "
            f"{reading.drafted!r}, the second reading {reading.read!r}; check it against the "
            "image"
        )


def _verifier(s: Subject) -> list[Finding]:
    return verifier_findings(s.img, s.exported)


def _trigger_in_description(s: Subject) -> Iterator[str]:
    if s.placement == "aesthetics" and "style_description" not in to_trainer(s.caption):
        yield (
            "has no style block, so the export writes [trigger] at the start of its "
            "high-level description (a style block of the trigger alone would break "
            "Ideogram's rules): fill the dataset's style block"
        )


def _near_duplicate(s: Subject) -> Iterator[str]:
    for flag in s.flags:
        if flag is Flag.duplicate:
            yield "is in an unresolved near-duplicate pair"


def _low_resolution(s: Subject) -> Iterator[str]:
    w, h = s.img.width, s.img.height
    largest = buckets.fit(w, h, resolution=max(s.trained_at))
    if buckets.is_low_resolution(w, h, resolution=largest.resolution):
        yield (
            f"{w}x{h} has fewer pixels than {largest.resolution}x{largest.resolution}: the "
            f"trainer never upscales, so it trains at {largest.bucket_width}x"
            f"{largest.bucket_height}, not at the full resolution"
        )


def _box_cropped(s: Subject) -> Iterator[str]:
    for cut in buckets.cropped_boxes(
        s.caption, width=s.img.width, height=s.img.height, resolutions=s.trained_at
    ):
        yield (
            f"element {cut.element}'s box loses {cut.lost:.0%} of its area to the trainer's "
            f"centre crop at {cut.resolution} px: the caption names what it does not see"
        )


def _transparent(img: Image) -> Iterator[str]:
    if img.transparent_share:
        yield transparency_effect(img.transparent_share)
    elif img.transparent_share is None and img.mode in ("RGBA", "LA", "PA"):
        yield (
            "has an alpha channel (imported before Atelier measured transparency): any "
            f"transparent pixel is flattened onto {BACKGROUND_NAME} by the export unless "
            "exported with 'keep transparency as a loss mask' (--keep-alpha)"
        )


def _no_palette(t: Tally) -> Iterator[str]:
    if t.without_palette:
        yield (
            f"{t.without_palette} of {t.captioned} captions have no palette: the guide's "
            "color_palette gives Ideogram 4 concrete colour anchors; fill them from the pixels "
            "in one step (undoable)"
        )


def _prefix_commas(t: Tally) -> Iterator[str]:
    if t.with_commas:
        yield (
            f"{t.with_commas} caption(s) hold commas: with the trigger word prefixed, the "
            "trainer reads captions as plain text and gives every comma a space after it "
            '("1,000" becomes "1, 000"); place the trigger in aesthetics to keep them exact'
        )


def _batch_repeats(t: Tally) -> Iterator[str]:
    """Most buckets holding fewer images than the profile's batch: their batches are repeats."""
    run = profiles.plan(profile=t.profile, resolution=t.resolution, sizes=t.sizes)
    short = profiles.short_buckets(run.buckets, run.batch)
    if run.batch == 1 or 2 * short <= len(run.buckets):
        return
    res = "/".join(map(str, run.resolutions))
    yield (
        f"{short} of the {len(run.buckets)} buckets at {res} px hold fewer images than the "
        f"{t.profile} profile's batch of {run.batch}: the trainer cuts each batch from one "
        "bucket and fills it with repeats, so their images weigh more than the others; "
        "images of the common aspect ratios (or a smaller profile) even it out"
    )


def _sample_prompt_dashes(t: Tally) -> Iterator[str]:
    """A '--' every prefixed sample prompt would hold: the trainer cuts sample prompts there."""
    if t.placement != "prefix":
        return
    holders = [f"the trigger word {t.trigger!r}"] if "--" in t.trigger else []
    holders += [f"the style block's {k}" for k, v in t.block.items() if "--" in v]
    if holders:
        yield (
            f"{' and '.join(holders)} hold '--': with the trigger prefixed, sample prompts are "
            "plain text and the trainer cuts each one at '--', reading the rest as options "
            "(--w, --seed ...); reword it, or place the trigger in aesthetics, where the export "
            "escapes it"
        )


def _few_images(t: Tally) -> Iterator[str]:
    if t.images < MIN_IMAGES:
        yield f"{t.images} images; a style wants 30 to 60"


def _same_compositions(t: Tally) -> Iterator[str]:
    if t.shapes and t.images >= 6:
        _, count = t.shapes.most_common(1)[0]
        if count / t.images > 0.5:
            yield (
                f"{count} of {t.images} captions have the same composition (element count "
                "and layout): vary framing and the number of figures"
            )


# An image without a caption gets this finding alone; one with a caption, every rule of
# IMAGE_RULES in this order (verifier: Ideogram's caption rules, as verifier_<rule>).
MISSING_CAPTION = Rule("error", _missing_caption)
# Every image, captioned or not, after the rules above: what the trainer sees of its pixels.
PIXEL_RULES: dict[str, Rule] = {"transparent": Rule("warning", _transparent)}
IMAGE_RULES: dict[str, Rule] = {
    "degenerate_box": Rule("error", _degenerate_box),
    "empty_text": Rule("error", _empty_text),
    "trigger_in_caption": Rule("error", _trigger_in_caption),
    "placeholder_in_caption": Rule("error", _placeholder_in_caption),
    "not_approved": Rule("warning", _not_approved),
    "weak_approved": Rule("warning", _weak_approved),
    "style_drift": Rule("warning", _style_drift),
    "caption_too_long": Rule("error", _caption_too_long),
    "ambiguous_boxes": Rule("error", _ambiguous_boxes),
    "verifier": Rule("error", _verifier),
    "trigger_in_description": Rule("warning", _trigger_in_description),
    "near_duplicate": Rule("warning", _near_duplicate),
    "low_resolution": Rule("warning", _low_resolution),
    "box_cropped": Rule("warning", _box_cropped),
    "second_reading": Rule("warning", _second_reading),
}
DATASET_RULES: dict[str, Rule] = {
    "no_palette": Rule("warning", _no_palette),
    "prefix_commas": Rule("warning", _prefix_commas),
    "batch_repeats": Rule("warning", _batch_repeats),
    "sample_prompt_dashes": Rule("error", _sample_prompt_dashes),
    "few_images": Rule("warning", _few_images),
    "same_compositions": Rule("warning", _same_compositions),
}


def _apply(code: str, rule: Rule, subject: Any, img: Image | None) -> list[Finding]:
    """The rule's findings on `subject` (an image's Subject, the Image itself when it has no
    caption, or the dataset's Tally), under its code and severity."""
    return [
        found
        if isinstance(found, Finding)
        else Finding(
            rule.severity, code, img.filename if img else None, found, img.id if img else None
        )
        for found in rule.check(subject)
    ]


def lint_dataset(
    session: Session,
    *,
    dataset: Dataset,
    placement: str = "aesthetics",
    dialect: str = "official",
    profile: str = profiles.DEFAULT_PROFILE,
) -> list[Finding]:
    """Findings for the dataset as it would be exported with this placement and dialect:
    every image rule on each image, then the dataset rules on what they counted."""
    block = block_of(dataset)
    rows = revisions.head_captions(session, dataset=dataset)
    flags = {r.image.id: r.flags for r in catalog.list_images(session, dataset=dataset)[0]}
    trained_at = profiles.get_profile(profile).resolutions(dataset.resolution)
    tally = Tally(
        profile=profile,
        resolution=dataset.resolution,
        placement=placement,
        trigger=dataset.trigger_word.strip(),
        block=block,
        images=len(rows),
    )
    out: list[Finding] = []
    for img, stored in rows:
        if stored is None:
            out += _apply("missing_caption", MISSING_CAPTION, img, img)
            continue
        caption = effective(stored, block)
        tally.count(img, stored, caption)
        exported = caption_text(
            caption,
            dialect=dialect,  # type: ignore[arg-type]
            placement=placement,  # type: ignore[arg-type]
            width=img.width,
            height=img.height,
        )
        subject = Subject(
            img=img,
            dataset=dataset,
            block=block,
            stored=stored,
            caption=caption,
            text=dumps_official(caption),
            exported=exported,
            placement=placement,
            trained_at=trained_at,
            flags=flags.get(img.id, []),
            doubts=_doubts(session, img),
        )
        for code, rule in IMAGE_RULES.items():
            out += _apply(code, rule, subject, img)
    for img, _ in rows:
        for code, rule in PIXEL_RULES.items():
            out += _apply(code, rule, img, img)
    for code, rule in DATASET_RULES.items():
        out += _apply(code, rule, tally, None)
    return out


def _doubts(session: Session, img: Image) -> doubts.Doubts | None:
    draft = revisions.newest_draft(session, img)
    return doubts.Doubts.from_json(draft.doubts) if draft else None


def _strings(value: Any) -> list[str]:
    """Every string inside a caption's JSON data."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _shape(caption: Caption) -> tuple[int, ...]:
    """A coarse composition signature: element count and each box's third of the canvas."""
    thirds = []
    for e in caption.composition.elements:
        if e.box is not None:
            cx, cy = (e.box.x0 + e.box.x1) / 2, (e.box.y0 + e.box.y1) / 2
            thirds.append(int(cx * 3) * 3 + int(cy * 3))
    return (len(caption.composition.elements), *sorted(thirds))


def as_json(findings: list[Finding]) -> str:
    return json.dumps([f.as_dict() for f in findings], ensure_ascii=False, indent=1)
