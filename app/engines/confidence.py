"""How sure the model was of each part of a draft, from the probabilities of the tokens it
sampled.

A draft is JSON in a shape the grammar (local engine) or the server's schema enforces: the
keys, quotes, commas and brackets are forced and say nothing of the model's certainty. Only
the tokens that overlap a VALUE (a string's characters, a number, an enum word) count. Each
caption field gets the probability of its least likely token and the mean of its tokens';
each element gets the same over all of its values. Fields are named by their path in
Atelier's caption: `high_level_description`, `style.aesthetics`, `style.lighting`,
`style.medium`, `style.render`, `composition.background`, `elements.N.desc`,
`elements.N.text`, `elements.N.box`, `elements.N.type`, and `elements.N` for the element.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left, bisect_right
from dataclasses import asdict, dataclass

# The draft's keys (app/engines/schema.py) as caption paths.
_TOP = {"high_level_description": "high_level_description"}
_STYLE = {
    "aesthetics": "style.aesthetics",
    "lighting": "style.lighting",
    "medium": "style.medium",
    "technique": "style.render",
}
_ELEMENT = {"type": "type", "bbox_2d": "box", "text": "text", "desc": "desc"}


@dataclass(frozen=True)
class Confidence:
    least: float  # the probability of the least likely token
    mean: float  # the mean probability of its tokens
    tokens: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


class _Scanner:
    """Walks a JSON text, recording the character span of every scalar value with its path."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.spans: list[tuple[tuple[str | int, ...], int, int]] = []

    def scan(self) -> list[tuple[tuple[str | int, ...], int, int]]:
        self._value(())
        return self.spans

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def _value(self, path: tuple[str | int, ...]) -> None:
        self._skip()
        c = self.text[self.pos]
        if c == "{":
            self.pos += 1
            self._skip()
            if self.text[self.pos] == "}":
                self.pos += 1
                return
            while True:
                self._skip()
                start = self.pos
                self._string_end()
                key = json.loads(self.text[start : self.pos])
                self._skip()
                self.pos += 1  # :
                self._value((*path, key))
                self._skip()
                c = self.text[self.pos]
                self.pos += 1
                if c == "}":
                    return
        elif c == "[":
            self.pos += 1
            self._skip()
            if self.text[self.pos] == "]":
                self.pos += 1
                return
            index = 0
            while True:
                self._value((*path, index))
                index += 1
                self._skip()
                c = self.text[self.pos]
                self.pos += 1
                if c == "]":
                    return
        elif c == '"':
            start = self.pos
            self._string_end()
            self.spans.append((path, start + 1, self.pos - 1))  # the characters, not the quotes
        else:
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] not in ",]} \t\r\n":
                self.pos += 1
            self.spans.append((path, start, self.pos))

    def _string_end(self) -> None:
        self.pos += 1  # the opening quote
        while self.text[self.pos] != '"':
            self.pos += 2 if self.text[self.pos] == "\\" else 1
        self.pos += 1


def _caption_path(path: tuple[str | int, ...]) -> str | None:
    if len(path) == 1 and path[0] in _TOP:
        return _TOP[str(path[0])]
    if len(path) == 2 and path[0] == "style_description" and path[1] in _STYLE:
        return _STYLE[str(path[1])]
    if path[:1] == ("compositional_deconstruction",):
        if path[1:] == ("background",):
            return "composition.background"
        if len(path) >= 4 and path[1] == "elements" and path[3] in _ELEMENT:
            return f"elements.{path[2]}.{_ELEMENT[str(path[3])]}"
    return None


def field_confidences(text: str, tokens: list[tuple[bytes, float]]) -> dict[str, Confidence]:
    """Each field's and element's confidence, from the sampled tokens (their bytes and log
    probabilities, in order); empty when the tokens do not spell `text` or it is not JSON."""
    raw = text.encode()
    if b"".join(t for t, _ in tokens) != raw:
        return {}
    try:
        json.loads(text)
        spans = _Scanner(text).scan()
    except (ValueError, IndexError):
        return {}
    # Each token's character span, from its byte offsets (the same where the text is ASCII).
    if len(raw) == len(text):
        char_at: list[int] | range = range(len(raw) + 1)
    else:
        char_at = [0] * (len(raw) + 1)
        chars = 0
        for i in range(len(raw)):
            char_at[i] = chars
            if (raw[i] & 0xC0) != 0x80:
                chars += 1
        char_at[len(raw)] = len(text)
    starts, ends, probs = [], [], []
    offset = 0
    for piece, logprob in tokens:
        start, end = char_at[offset], char_at[offset + len(piece)]
        starts.append(start)
        ends.append(max(end, start + 1))
        probs.append(math.exp(logprob))
        offset += len(piece)

    pooled: dict[str, list[float]] = {}
    for path, start, end in spans:
        name = _caption_path(path)
        if name is None:
            continue
        # A token counts for a value when it overlaps the value's characters; the tokens'
        # starts and ends both rise, so the overlapping ones are one run, found by bisection.
        first = bisect_right(ends, start)
        last = bisect_left(starts, max(end, start + 1))
        overlapping = probs[first:last]
        pooled.setdefault(name, []).extend(overlapping)
        if name.startswith("elements."):
            pooled.setdefault(name.rsplit(".", 1)[0], []).extend(overlapping)
    return {
        name: Confidence(least=min(p), mean=sum(p) / len(p), tokens=len(p))
        for name, p in pooled.items()
        if p
    }


def least_sure(confidences: dict[str, Confidence]) -> float | None:
    """The draft's least likely value token: how unsure its weakest part was."""
    return min((c.least for c in confidences.values()), default=None)
