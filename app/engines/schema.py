"""The JSON shape a model drafts in, and its conversion to Atelier's canonical caption.

The model writes the caption's text and boxes, not its palettes (those come from the pixels,
app/images/palettes.py). Boxes are asked for as `bbox_2d`, x first, in the convention the
model family was trained on; converting them is app/captions/boxes.py's job. Every string
has a bounded pattern and every array a maxItems, so schema-constrained decoding must close
the JSON within a known number of characters (`worst_case_chars`) and tokens (`token_budget`).

Strings may hold exactly the escapes a caption needs: `\\"` and `\\\\` in every text, `\\n` in a
transcription (a sign's two lines). Engines read a `pattern` in one of two ways, so the schema
comes in two spellings (`Escapes`); both bound a string by its decoded characters:
- "raw" (the default, safe everywhere): the pattern describes the text between the quotes as
  written, escapes included. This is how llama.cpp's JSON-schema-to-grammar converter
  (llama.cpp's server, Ollama, LM Studio) and the local engine (xgrammar's grammar with its
  regexes in raw mode) apply it; xgrammar's own JSON mode (vLLM, SGLang) writes no escape.
  An engine that applies it to the decoded value instead (below) stays valid JSON: it only
  loses the line breaks and quotes.
- "decoded": the pattern describes the string's value, as JSON Schema means it; the engine
  writes the escapes. llguidance (OpenAI's hosted models, vLLM's guidance backend) reads it so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from app.captions import boxes
from app.captions.boxes import Box
from app.captions.schema import MEDIA, Caption, Composition, Element, Style

BoxConvention = Literal["qwen2vl", "qwen25vl", "qwen3vl", "official"]

Escapes = Literal["raw", "decoded"]
ESCAPES: tuple[Escapes, ...] = ("raw", "decoded")
# Where a string's bound is written: in its pattern (every engine reads it), or as
# `maxLength` beside an unbounded pattern (the local engine: its grammar would give each
# bounded character a state of its own, app/engines/local/lengths.py keeps the bound instead).
Bounds = Literal["pattern", "maxLength"]

# One character of a string, by spelling and by whether it may hold a line break. Raw: a plain
# character or one of the escapes; never a raw control character, a lone quote or backslash
# (broken JSON), nor \t, \u and the rest (a caption never needs them, and \uXXXX would make a
# character cost six). Decoded: any character but control characters (a line break allowed in
# transcriptions); the engine escapes quotes and backslashes itself.
_CHARS: dict[tuple[Escapes, bool], str] = {
    ("raw", False): r'([^\x00-\x1f"\\]|\\["\\])',
    ("raw", True): r'([^\x00-\x1f"\\]|\\[n"\\])',
    ("decoded", False): r"[^\x00-\x1f]",
    ("decoded", True): r"[^\x00-\x09\x0b-\x1f]",
}
# xgrammar 0.2.8 fails to compile a repetition bound above 128 ({0,129} and up), and ignores
# maxLength beside a pattern; longer bounds are spelled as unambiguous 128-character steps.
_STEP = 128


@dataclass(frozen=True)
class DraftLimits:
    """Upper bounds on what a draft may hold."""

    description: int = 400
    style_field: int = 200
    background: int = 240
    elements: int = 10
    desc: int = 240
    text: int = 160
    coordinate: int = 1000  # the largest box coordinate the convention allows

    @classmethod
    def scaled(cls, *, max_chars: int, max_elements: int) -> DraftLimits:
        """DraftLimits from one field length: the description gets twice as much."""
        return cls(
            description=2 * max_chars,
            style_field=max_chars,
            background=max_chars,
            elements=max_elements,
            desc=max_chars,
            text=max_chars,
        )

    @property
    def shortest_string(self) -> int:
        """The smallest bound on any of the draft's strings."""
        return min(self.description, self.style_field, self.background, self.desc, self.text)

    def for_convention(self, convention: BoxConvention, *, max_side: int = 4096) -> DraftLimits:
        top = max_side if convention == "qwen25vl" else boxes.OFFICIAL_SCALE
        return DraftLimits(**{**self.__dict__, "coordinate": top})


DEFAULT_LIMITS = DraftLimits()


def _bounded(n: int, char: str) -> str:
    """A regex body matching 0 to n of `char`."""
    if n <= _STEP:
        return f"{char}{{0,{n}}}"
    rest = _bounded(n - _STEP, char)
    return f"({char}{{0,{_STEP - 1}}}|{char}{{{_STEP}}}{rest})"


def text_pattern(n: int | None, *, escapes: Escapes = "raw", lines: bool = False) -> str:
    """The pattern of a string of at most n characters, any number with None (`lines`: line
    breaks allowed)."""
    char = _CHARS[escapes, lines]
    return "^" + (f"{char}*" if n is None else _bounded(n, char)) + "$"


def json_schema(
    limits: DraftLimits = DEFAULT_LIMITS, *, escapes: Escapes = "raw", bounds: Bounds = "pattern"
) -> dict[str, Any]:
    """The JSON schema the model's output is constrained to (`escapes`: see the module's doc;
    `bounds`: where a string's bound is written, `Bounds`).

    Only keywords every engine reads alike: typed nodes (OpenAI's strict mode), `pattern`
    and never `maxLength` beside it (vLLM refuses the pair for xgrammar), `maxItems`,
    integer `minimum`/`maximum`, `const`, `enum`, `anyOf`. `bounds="maxLength"` is for the
    local engine alone.
    """

    def _text(n: int, lines: bool = False) -> dict[str, Any]:
        if bounds == "maxLength":
            pattern = text_pattern(None, escapes=escapes, lines=lines)
            return {"type": "string", "pattern": pattern, "maxLength": n}
        return {"type": "string", "pattern": text_pattern(n, escapes=escapes, lines=lines)}

    coordinate = {"type": "integer", "minimum": 0, "maximum": limits.coordinate}
    bbox = {"type": "array", "items": coordinate, "minItems": 4, "maxItems": 4}
    obj = {
        "type": "object",
        "properties": {
            "type": {"type": "string", "const": "obj"},
            "bbox_2d": bbox,
            "desc": _text(limits.desc),
        },
        "required": ["type", "bbox_2d", "desc"],
        "additionalProperties": False,
    }
    text = {
        "type": "object",
        "properties": {
            "type": {"type": "string", "const": "text"},
            "bbox_2d": bbox,
            "text": _text(limits.text, lines=True),
            "desc": _text(limits.desc),
        },
        "required": ["type", "bbox_2d", "text", "desc"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "high_level_description": _text(limits.description),
            "style_description": {
                "type": "object",
                "properties": {
                    "aesthetics": _text(limits.style_field),
                    "lighting": _text(limits.style_field),
                    "medium": {"type": "string", "enum": list(MEDIA)},
                    "technique": _text(limits.style_field),
                },
                "required": ["aesthetics", "lighting", "medium", "technique"],
                "additionalProperties": False,
            },
            "compositional_deconstruction": {
                "type": "object",
                "properties": {
                    "background": _text(limits.background),
                    "elements": {
                        "type": "array",
                        "items": {"anyOf": [obj, text]},
                        "maxItems": limits.elements,
                    },
                },
                "required": ["background", "elements"],
                "additionalProperties": False,
            },
        },
        "required": ["high_level_description", "style_description", "compositional_deconstruction"],
        "additionalProperties": False,
    }


def _worst_case(limits: DraftLimits, per_char: int) -> int:
    skeleton = len(json.dumps(json_schema(limits)["required"])) + 200
    coords = 4 * (len(str(limits.coordinate)) + 1)
    element = 60 + coords + per_char * (limits.text + limits.desc)
    return (
        skeleton
        + per_char * (limits.description + 3 * limits.style_field + limits.background)
        + len("graphic_design")
        + limits.elements * element
    )


def worst_case_chars(limits: DraftLimits) -> int:
    """The longest output the schema allows, in characters (keys, punctuation and the two
    characters of each escape included)."""
    return _worst_case(limits, per_char=2)


# Qwen's tokenizer spends a token on 3.5 to 4.5 characters of English caption prose; 3 leaves
# room for names, numbers and transcriptions. An escape (`\n`, `\"`) is one token, as short as
# the character it stands for, so the budget counts characters, not their spelling.
CHARS_PER_TOKEN = 3


def token_budget(limits: DraftLimits) -> int:
    """New tokens that hold a caption at the schema's bounds (1,024 does not at the defaults)."""
    return -(-_worst_case(limits, per_char=1) // CHARS_PER_TOKEN) + 64


class DraftParseError(ValueError):
    """The model's output is not a caption; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def to_caption(
    raw: str,
    *,
    convention: BoxConvention,
    resized: tuple[int, int] | None = None,
) -> Caption:
    """The canonical caption from a model's JSON; `resized` is the input size for Qwen2.5-VL."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise DraftParseError(f"the output is not complete JSON ({e.msg} at {e.pos})") from None
    if not isinstance(data, dict):
        raise DraftParseError("the output is not a JSON object")
    try:
        style = data.get("style_description") or {}
        comp = data.get("compositional_deconstruction") or {}
        elements = []
        for item in comp.get("elements") or []:
            kind = item.get("type", "obj")
            elements.append(
                Element(
                    type=kind,
                    box=_box(item.get("bbox_2d"), convention, resized),
                    text=item.get("text", "") if kind == "text" else None,
                    desc=item.get("desc", ""),
                )
            )
        medium = style.get("medium")
        return Caption(
            high_level_description=data.get("high_level_description", ""),
            style=Style(
                aesthetics=style.get("aesthetics", ""),
                lighting=style.get("lighting", ""),
                medium=medium if medium in MEDIA else None,
                render=style.get("technique", ""),
            ),
            composition=Composition(background=comp.get("background", ""), elements=elements),
        )
    except (ValidationError, AttributeError, TypeError, ValueError) as e:
        raise DraftParseError(f"the output does not fit the caption schema ({e})") from None


def _box(value: Any, convention: BoxConvention, resized: tuple[int, int] | None) -> Box | None:
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 4):
        raise ValueError("bbox_2d is not four numbers")
    if convention == "qwen25vl":
        if resized is None:
            raise ValueError("Qwen2.5-VL boxes need the resized input size")
        box = boxes.from_qwen25vl(value, resized_width=resized[0], resized_height=resized[1])
    elif convention == "qwen3vl":
        box = boxes.from_qwen3vl(value)
    elif convention == "official":
        box = boxes.from_official(value)
    else:
        box = boxes.from_qwen2vl(value)
    return None if box.is_degenerate else box
