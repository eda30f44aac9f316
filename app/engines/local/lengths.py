"""The bounds of the draft's strings, kept token by token beside the grammar.

The local engine's grammar (grammar.py) leaves the strings unbounded: xgrammar gives every
bounded character a state of its own, with a token mask each, which at the default bounds
made a 240 MB grammar that took 15 to 40 s to compile and seconds to read back. Instead each
row's parser (closing.Parser) counts the characters of the string it is in, and once fewer
are left than the longest token carries, the row's mask keeps only the tokens that fit.

Characters are counted as the schema's bounded patterns count them (app/engines/schema.py):
a code point, or an escape (`\\n`, `\\"`, `\\\\`) as one. A token's characters are counted
from where it starts: inside a string up to the quote that closes it, and in any string the
token opens after that. Every string's bound is at least the shortest one, so a string a
token opens is held to that (a token carrying that many characters behind a quote is never
in a real vocabulary at the default bounds; with tiny bounds it is left out).
"""

from __future__ import annotations

import numpy as np

_QUOTE, _BACKSLASH = 0x22, 0x5C


def _count(token: bytes, *, inside: bool, escaped: bool) -> tuple[int, int]:
    """Characters the token adds to the string it starts in (0 outside one), and the most
    it puts in any string it opens."""
    first, most, chars = 0, 0, 0
    in_first = inside
    for b in token:
        if not inside:
            if b == _QUOTE:
                inside, chars = True, 0
            continue
        if escaped:
            escaped = False  # the escaped character: counted with its backslash
        elif b == _QUOTE:
            if in_first:
                first, in_first = chars, False
            else:
                most = max(most, chars)
            inside = False
            continue
        elif b == _BACKSLASH:
            escaped = True
            chars += 1
        elif b & 0xC0 != 0x80:  # a UTF-8 continuation byte belongs to its lead's character
            chars += 1
    if inside:
        if in_first:
            first = chars
        else:
            most = max(most, chars)
    return first, most


class StringLengths:
    """Per-token character counts for a vocabulary, and the masks that keep a string's
    bound."""

    def __init__(self, vocab: list[bytes], *, shortest_bound: int) -> None:
        n = len(vocab)
        # Characters added to the string a token starts in, from a plain place in it and
        # just after a backslash; and the most put in a string it opens, from each start.
        self.inside = np.zeros(n, np.int32)
        self.after_escape = np.zeros(n, np.int32)
        opens = {start: np.zeros(n, np.int32) for start in ("inside", "escaped", "outside")}
        plain = []
        for i, token in enumerate(vocab):
            if b'"' not in token and b"\\" not in token:
                plain.append(i)
                continue
            self.inside[i], opens["inside"][i] = _count(token, inside=True, escaped=False)
            self.after_escape[i], opens["escaped"][i] = _count(token, inside=True, escaped=True)
            opens["outside"][i] = _count(token, inside=False, escaped=False)[1]
        # Tokens without a quote or backslash (nearly all) open no string: their code
        # points, counted together.
        if plain:
            lengths = np.array([len(vocab[i]) for i in plain])
            data = np.frombuffer(b"".join(vocab[i] for i in plain), np.uint8)
            starts = (data & 0xC0 != 0x80).astype(np.int32)
            offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
            nonempty = lengths > 0
            counts = np.zeros(len(plain), np.int32)
            counts[nonempty] = np.add.reduceat(starts, offsets[nonempty])
            first = np.zeros(len(plain), np.int32)  # after a backslash it is the escaped one
            first[nonempty] = starts[offsets[nonempty]]
            self.inside[plain] = counts
            self.after_escape[plain] = counts - first
        self.longest = int(self.inside.max(initial=0))  # more room than this: nothing to keep
        self._most = {"inside": self.longest, "escaped": int(self.after_escape.max(initial=0))}
        self._fits = {start: most <= shortest_bound for start, most in opens.items()}
        self._every_fit = {start: bool(fits.all()) for start, fits in self._fits.items()}
        self._masks: dict[tuple[str, int], np.ndarray] = {}

    def inside_mask(self, room: int, escaped: bool, words: int) -> np.ndarray | None:
        """The bitmask row (xgrammar's layout, `words` int32 words) of the tokens that fit a
        string with `room` characters left; None where every token does."""
        start = "escaped" if escaped else "inside"
        room = min(max(room, 0), self._most[start])
        if room == self._most[start] and self._every_fit[start]:
            return None
        if (start, room) not in self._masks:
            counts = self.after_escape if escaped else self.inside
            self._masks[start, room] = _packed((counts <= room) & self._fits[start], words)
        return self._masks[start, room]

    def outside_mask(self, words: int) -> np.ndarray | None:
        """The bitmask row of the tokens that fit outside any string (a string they open
        holds the shortest bound); None where every token does."""
        if self._every_fit["outside"]:
            return None
        if ("outside", 0) not in self._masks:
            self._masks["outside", 0] = _packed(self._fits["outside"], words)
        return self._masks["outside", 0]


def _packed(allowed: np.ndarray, words: int) -> np.ndarray:
    """A bool per token as an int32 bitmask row: token t is bit t % 32 of word t // 32
    (xgrammar's layout); tokens past the vocabulary are left out."""
    bits = np.zeros(words * 32, bool)
    bits[: min(len(allowed), words * 32)] = allowed[: words * 32]
    packed = np.packbits(bits, bitorder="little").view("<i4")
    return packed.astype(np.int32)
