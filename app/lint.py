"""Readiness lint: what stops a dataset from training well, before it is exported.

Errors stop an export (unless forced); warnings are listed with it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from sqlmodel import Session

from app.captions import revisions
from app.captions.dialects import dumps_official, to_trainer
from app.captions.schema import Caption
from app.captions.style_block import block_of, effective, field_states
from app.export import buckets, profiles
from app.export.caption_file import caption_text
from app.export.verifier import verify_text
from app.images import catalog
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


def lint_dataset(
    session: Session,
    *,
    dataset: Dataset,
    placement: str = "aesthetics",
    dialect: str = "official",
    profile: str = profiles.DEFAULT_PROFILE,
) -> list[Finding]:
    """Findings for the dataset as it would be exported with this placement and dialect."""
    block = block_of(dataset)
    trigger = dataset.trigger_word.strip().lower()
    out: list[Finding] = []
    rows = revisions.head_captions(session, dataset=dataset)
    flags = {r.image.id: r.flags for r in catalog.list_images(session, dataset=dataset)[0]}
    shapes: Counter[tuple[int, ...]] = Counter()
    trained_at = profiles.get_profile(profile).resolutions(dataset.resolution)
    with_commas = 0

    def add(sev: Severity, code: str, img: Image | None, message: str) -> None:
        out.append(
            Finding(sev, code, img.filename if img else None, message, img.id if img else None)
        )

    for img, stored in rows:
        if stored is None:
            why = (
                f" (its caption file could not be read: {img.caption_error})"
                if img.caption_error
                else ""
            )
            add("error", "missing_caption", img, f"has no caption{why}")
            continue
        caption = effective(stored, block)
        for n, e in enumerate(caption.composition.elements, 1):
            if e.box is not None and e.box.is_degenerate:
                add("error", "degenerate_box", img, f"element {n}'s box has no area")
            if e.type == "text" and not (e.text or "").strip():
                add("error", "empty_text", img, f"element {n} is a text element with no text")
        text = dumps_official(caption)
        if trigger and trigger in text.lower():
            add(
                "error",
                "trigger_in_caption",
                img,
                f"the trigger word {dataset.trigger_word!r} is written in the caption; the "
                "export places it for the trainer",
            )
        placeholders = [p for p in ("[trigger]", "[name]") if p in text]
        if placeholders:
            add(
                "error",
                "placeholder_in_caption",
                img,
                f"the caption holds {' and '.join(placeholders)}, which the trainer replaces "
                "with the trigger word wherever it appears: reword it",
            )
        if img.status != CaptionStatus.approved:
            add("warning", "not_approved", img, f"caption is {CaptionStatus(img.status).label}")
        elif (weak := revisions.weakness(caption)) is not None:
            add("warning", "weak_approved", img, f"is approved, but {weak}")
        overridden = [k for k, v in field_states(stored, block).items() if v == "overridden"]
        if overridden:
            add(
                "warning",
                "style_drift",
                img,
                f"overrides the dataset's style block ({', '.join(overridden)})",
            )
        tokens, exact = count_tokens(text)
        if tokens > TOKEN_BUDGET:
            add(
                "error",
                "caption_too_long",
                img,
                f"{'' if exact else 'about '}{tokens} tokens; the trainer's text encoder reads "
                f"{TOKEN_BUDGET} and cuts the rest off: shorten it",
            )
        if img.boxes_ambiguous:
            add(
                "error",
                "ambiguous_boxes",
                img,
                "its boxes were read as 0..1000 but could be pixels: choose the format on "
                "the dataset page; read the wrong way, every box is misplaced",
            )
        exported = caption_text(
            caption,
            dialect=dialect,  # type: ignore[arg-type]
            placement=placement,  # type: ignore[arg-type]
            width=img.width,
            height=img.height,
        )
        out.extend(verifier_findings(img, exported))
        if placement == "aesthetics" and "style_description" not in to_trainer(caption):
            add(
                "warning",
                "trigger_in_description",
                img,
                "has no style block, so the export writes [trigger] at the start of its "
                "high-level description (a style block of the trigger alone would break "
                "Ideogram's rules): fill the dataset's style block",
            )
        if placement == "prefix" and "," in "".join(_strings(to_trainer(caption))):
            with_commas += 1
        shapes[_shape(caption)] += 1
        for flag in flags.get(img.id, []):
            if flag is Flag.duplicate:
                add("warning", "near_duplicate", img, "is in an unresolved near-duplicate pair")
        largest = buckets.fit(img.width, img.height, resolution=max(trained_at))
        if buckets.is_low_resolution(img.width, img.height, resolution=largest.resolution):
            add(
                "warning",
                "low_resolution",
                img,
                f"{img.width}x{img.height} has fewer pixels than {largest.resolution}x"
                f"{largest.resolution}: the trainer never upscales, so it trains at "
                f"{largest.bucket_width}x{largest.bucket_height}, not at the full resolution",
            )
        for cut in buckets.cropped_boxes(
            caption, width=img.width, height=img.height, resolutions=trained_at
        ):
            add(
                "warning",
                "box_cropped",
                img,
                f"element {cut.element}'s box loses {cut.lost:.0%} of its area to the trainer's "
                f"centre crop at {cut.resolution} px: the caption names what it does not see",
            )
    if with_commas:
        add(
            "warning",
            "prefix_commas",
            None,
            f"{with_commas} caption(s) hold commas: with the trigger word prefixed, the trainer "
            "reads captions as plain text and gives every comma a space after it "
            '("1,000" becomes "1, 000"); place the trigger in aesthetics to keep them exact',
        )
    captioned = [(img.width, img.height) for img, stored in rows if stored is not None]
    out.extend(_batch_findings(profile=profile, resolution=dataset.resolution, sizes=captioned))
    if placement == "prefix":
        out.extend(_prefix_dash_findings(dataset.trigger_word.strip(), block))
    if len(rows) < MIN_IMAGES:
        add("warning", "few_images", None, f"{len(rows)} images; a style wants 30 to 60")
    if shapes and len(rows) >= 6:
        shape, count = shapes.most_common(1)[0]
        if count / len(rows) > 0.5:
            add(
                "warning",
                "same_compositions",
                None,
                f"{count} of {len(rows)} captions have the same composition (element count and "
                "layout): vary framing and the number of figures",
            )
    return out


def _batch_findings(
    *, profile: str, resolution: int, sizes: list[tuple[int, int]]
) -> list[Finding]:
    """Most buckets holding fewer images than the profile's batch: their batches are repeats."""
    run = profiles.plan(profile=profile, resolution=resolution, sizes=sizes)
    short = profiles.short_buckets(run.buckets, run.batch)
    if run.batch == 1 or 2 * short <= len(run.buckets):
        return []
    res = "/".join(map(str, run.resolutions))
    return [
        Finding(
            "warning",
            "batch_repeats",
            None,
            f"{short} of the {len(run.buckets)} buckets at {res} px hold fewer images than the "
            f"{profile} profile's batch of {run.batch}: the trainer cuts each batch from one "
            "bucket and fills it with repeats, so their images weigh more than the others; "
            "images of the common aspect ratios (or a smaller profile) even it out",
        )
    ]


def _prefix_dash_findings(trigger: str, block: dict[str, str]) -> list[Finding]:
    """A '--' every prefixed sample prompt would hold: the trainer cuts sample prompts there."""
    holders = [f"the trigger word {trigger!r}"] if "--" in trigger else []
    holders += [f"the style block's {k}" for k, v in block.items() if "--" in v]
    if not holders:
        return []
    return [
        Finding(
            "error",
            "sample_prompt_dashes",
            None,
            f"{' and '.join(holders)} hold '--': with the trigger prefixed, sample prompts are "
            "plain text and the trainer cuts each one at '--', reading the rest as options "
            "(--w, --seed ...); reword it, or place the trigger in aesthetics, where the export "
            "escapes it",
        )
    ]


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
