"""The drafting prompt: written for Atelier's caption schema and the guide's rules."""

from __future__ import annotations

from app.engines.schema import DEFAULT_LIMITS, BoxConvention, DraftLimits

_BOXES = {
    "qwen2vl": "[x1, y1, x2, y2] as integers from 0 to 1000, relative to the image's width and "
    "height, top-left first",
    "qwen3vl": "[x1, y1, x2, y2] as integers from 0 to 1000, relative to the image's width and "
    "height, top-left first",
    "qwen25vl": "[x1, y1, x2, y2] in pixels of the image as you see it, top-left first",
    "official": "[y1, x1, y2, x2] as integers from 0 to 1000, relative to the image's height "
    "and width, top-left first",
}


def build_prompt(
    *,
    width: int,
    height: int,
    convention: BoxConvention,
    style_block: dict[str, str],
    instructions: str = "",
    limits: DraftLimits = DEFAULT_LIMITS,
) -> str:
    """The text that goes beside the image."""
    ratio = width / height
    shape = "square" if 0.95 < ratio < 1.05 else ("landscape" if ratio > 1 else "portrait")
    lines = [
        "Write the training caption of this image as JSON, in exactly the shape required.",
        f"The image is {width}x{height} pixels ({shape}, aspect ratio {ratio:.2f}).",
        "",
        "Rules:",
        "- Describe only what can be seen. Do not guess the artist, the title, the period or "
        "a story.",
        "- high_level_description: one or two sentences about the whole image: who or what, "
        "doing what, where.",
        "- style_description says how the image is made, not what it shows: aesthetics (the "
        "school, movement or look), lighting, medium, and technique (for a photograph: camera, "
        "lens, film look; otherwise: brushwork, line, rendering).",
        "- background is only the scene's shell: walls, floor, sky, landscape, ambient light.",
        f"- elements: at most {limits.elements}, the most important first. One coherent "
        "subject is one element (a person with their clothes and what they hold). Leave out "
        "things too many to count one by one, such as crowds, foliage or stars.",
        f"- bbox_2d is a tight box around the element: {_BOXES[convention]}.",
        "- Text that can be read in the image gets its own element of type text: text holds "
        "the exact words, line breaks kept, spelling as written; desc says how it looks. Never "
        "put those words in another field.",
        "- Write no trigger word, file name or mention of training, datasets or captions.",
    ]
    if style_block:
        lines += [
            "",
            "The whole dataset shares one style. Use this wording for the style fields unless "
            "the image clearly differs:",
        ]
        lines += [f"- {k}: {v}" for k, v in style_block.items()]
    if instructions.strip():
        lines += ["", "The dataset's own instructions:", instructions.strip()]
    return "\n".join(lines)


def reference_prompt(*, style_block: dict[str, str], instructions: str = "") -> str:
    """The prompt for a square image in the official box convention: what a job's prompt is,
    less what each image and model family changes in it (the draft report groups by it)."""
    return build_prompt(
        width=1000,
        height=1000,
        convention="official",
        style_block=style_block,
        instructions=instructions,
    )
