"""The shortest valid end of a half-written answer, so that every answer closes in its budget.

The grammar (xgrammar, compiled from app/engines/schema.py with `any_whitespace=False`)
and lengths.py let a model write strings up to their bounds, and the bounds add up to more
than any token budget a user sets. So the decoder watches each row: once the tokens left come near
what the shortest valid end of that row's JSON needs, it writes that end itself (`Closer`
gives it), and the answer parses whatever the model would have written.

The JSON schema is read as sequences of fixed text and values: an object of required keys
is `{"k1": ` value `, "k2": ` value `}` (xgrammar keeps the schema's key order and writes
", " and ": " between items without `any_whitespace`), an enum or `anyOf` is a choice among
such sequences, and strings, integers and arrays are values of their own. A row's parser is
fed the bytes of its tokens and keeps a stack of where it is in each. Strings are read as
the grammar writes them (the schema's "raw" spelling): `\"`, `\\` and `\n` are escapes.
The parser also counts the characters of the string it is in, for the bounds the grammar
leaves to lengths.py (`Parser.room`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

COMMA, COLON = b", ", b": "
_QUOTE, _BACKSLASH = 0x22, 0x5C
_STOPS = frozenset((_QUOTE, _BACKSLASH))
_DIGITS = frozenset(b"0123456789")


# Grammar nodes: what a schema node becomes.
@dataclass(frozen=True)
class _Lit:
    text: bytes


@dataclass(frozen=True)
class _Str:
    max_chars: int | None = None  # the schema's maxLength, kept by lengths.py


@dataclass(frozen=True)
class _Int:
    pass


@dataclass(frozen=True)
class _Arr:
    item: Any
    min_items: int
    max_items: int | None


@dataclass(frozen=True)
class _Seq:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class _Choice:
    options: tuple[_Seq, ...]


def _node(schema: dict[str, Any]) -> Any:
    """The grammar node of a JSON schema node (the subset app/engines/schema.py writes)."""
    if "const" in schema:
        return _Seq((_Lit(json.dumps(schema["const"]).encode()),))
    if "enum" in schema:
        return _Choice(tuple(_Seq((_Lit(json.dumps(v).encode()),)) for v in schema["enum"]))
    if "anyOf" in schema:
        return _Choice(tuple(_as_seq(_node(s)) for s in schema["anyOf"]))
    kind = schema.get("type")
    if kind == "string":
        return _Str(schema.get("maxLength"))
    if kind == "integer":
        return _Int()
    if kind == "array":
        return _Arr(_node(schema["items"]), schema.get("minItems", 0), schema.get("maxItems"))
    if kind == "object":
        props = schema["properties"]
        if set(schema.get("required", [])) != set(props):
            raise ValueError("closing knows objects whose keys are all required")
        items: list[Any] = []
        text = b"{"
        for n, (key, sub) in enumerate(props.items()):
            text += (COMMA if n else b"") + json.dumps(key).encode() + COLON
            value = _node(sub)
            if isinstance(value, _Seq) and all(isinstance(i, _Lit) for i in value.items):
                text += b"".join(i.text for i in value.items)  # a const is fixed text too
                continue
            items += [_Lit(text), value]
            text = b""
        items.append(_Lit(text + b"}"))
        return _Seq(tuple(items))
    raise ValueError(f"closing does not know the schema node {schema!r}")


def _as_seq(node: Any) -> _Seq:
    return node if isinstance(node, _Seq) else _Seq((node,))


@functools.cache
def _shortest(node: Any) -> bytes:
    """The shortest text a node matches."""
    if isinstance(node, _Lit):
        return node.text
    if isinstance(node, _Str):
        return b'""'
    if isinstance(node, _Int):
        return b"0"
    if isinstance(node, _Arr):
        return b"[" + COMMA.join([_shortest(node.item)] * node.min_items) + b"]"
    if isinstance(node, _Seq):
        return _rest(node, 0)
    return min((_shortest(o) for o in node.options), key=len)


@functools.cache
def _rest(seq: _Seq, start: int) -> bytes:
    """The shortest text of a sequence's items from `start` on."""
    return b"".join(_shortest(i) for i in seq.items[start:])


def _longest_shortest(node: Any) -> int:
    """The longest of the shortest texts of a node's alternatives."""
    if isinstance(node, _Choice):
        return max(len(_shortest(o)) for o in node.options)
    return len(_shortest(node))


def _growth(node: Any) -> int:
    """The most one step of writing can lengthen the shortest end: an array item begun
    beyond the array's minimum, or an alternative longer than the shortest chosen."""
    most = 0
    if isinstance(node, _Arr):
        most = _longest_shortest(node.item) + len(COMMA)
        most = max(most, _growth(node.item))
    elif isinstance(node, _Seq):
        most = max((_growth(i) for i in node.items), default=0)
    elif isinstance(node, _Choice):
        spread = _longest_shortest(node) - len(_shortest(node))
        most = max([spread] + [_growth(o) for o in node.options])
    return most


class BadPrefix(ValueError):
    """The bytes fed are not the start of an answer the schema allows."""


@dataclass
class _SeqFrame:
    """Somewhere in one or more candidate sequences (several only inside shared text)."""

    options: list[_Seq]
    index: int = 0  # the item being matched
    offset: int = 0  # bytes of that item's text matched, when it is text
    in_value: bool = False  # that item is a value, on the stack above

    def end(self) -> bytes:
        seq = self.options[0]
        if self.index >= len(seq.items):
            return b""
        rest = _rest(seq, self.index + 1)
        item = seq.items[self.index]
        if isinstance(item, _Lit):
            # Inside shared text: the shortest candidate's end.
            return min(
                (
                    o.items[self.index].text[self.offset :]  # type: ignore[attr-defined]
                    + _rest(o, self.index + 1)
                    for o in self.options
                ),
                key=len,
            )
        return rest if self.in_value else _shortest(item) + rest


@dataclass
class _StrFrame:
    limit: int | None = None  # characters the string may hold
    opened: bool = False
    escape: bool = False  # after a backslash: the escaped character is owed
    pending: int = 0  # UTF-8 continuation bytes still owed
    lead: int = 0  # the lead byte of the character being completed
    chars: int = 0  # characters so far, an escape one (as lengths.py counts them)

    def end(self) -> bytes:
        if not self.opened:
            return b'""'
        if self.escape:
            return b'""'  # an escaped quote, then the closing one
        tail = b""
        if self.pending:
            # The smallest continuation bytes that make a valid character after this lead.
            first = {0xE0: 0xA0, 0xF0: 0x90}.get(self.lead, 0x80) if self.lead else 0x80
            tail = bytes([first]) + b"\x80" * (self.pending - 1)
        return tail + b'"'


@dataclass
class _IntFrame:
    digits: int = 0
    sign: bool = False

    def end(self) -> bytes:
        return b"" if self.digits else b"0"


@dataclass
class _ArrFrame:
    node: _Arr
    opened: bool = False
    count: int = 0  # items begun
    in_item: bool = False  # an item is on the stack above
    sep: int = 0  # bytes of ", " matched between items

    def end(self) -> bytes:
        if not self.opened:
            return _shortest(self.node)
        item = _shortest(self.node.item)
        owed = max(self.node.min_items - self.count, 0)
        if self.sep:
            return COMMA[self.sep :] + COMMA.join([item] * max(owed, 1)) + b"]"
        lead = COMMA if self.count else b""
        return (lead + COMMA.join([item] * owed) if owed else b"") + b"]"


@dataclass
class Parser:
    """Where one row's answer stands; `feed` its bytes, `end` gives its shortest valid end."""

    root: Any
    stack: list[Any] = field(default_factory=list)
    done: bool = False

    def __post_init__(self) -> None:
        self.stack = [self._frame(self.root)]

    @staticmethod
    def _frame(node: Any) -> Any:
        if isinstance(node, _Str):
            return _StrFrame(node.max_chars)
        if isinstance(node, _Int):
            return _IntFrame()
        if isinstance(node, _Arr):
            return _ArrFrame(node)
        if isinstance(node, _Choice):
            return _SeqFrame(list(node.options))
        return _SeqFrame([_as_seq(node)])

    def end(self) -> bytes:
        return b"".join(f.end() for f in reversed(self.stack))

    def room(self) -> tuple[int, bool] | None:
        """Inside a bounded string: the characters it may still take, and whether its next
        byte is an escaped one; None elsewhere."""
        top = self.stack[-1] if self.stack else None
        if not isinstance(top, _StrFrame) or not top.opened or top.limit is None:
            return None
        return top.limit - top.chars, top.escape

    def feed(self, data: bytes) -> None:
        i = 0
        while i < len(data):
            if not self.stack:
                raise BadPrefix("bytes after the answer's end")
            i = self._step(data, i)

    def _pop(self) -> None:
        """The top frame's value is complete: the frame below goes on past it."""
        self.stack.pop()
        while self.stack:
            below = self.stack[-1]
            if isinstance(below, _ArrFrame):
                below.in_item = False
                return
            if isinstance(below, _SeqFrame):
                below.index, below.offset, below.in_value = below.index + 1, 0, False
                if below.index < len(below.options[0].items):
                    return
            self.stack.pop()  # a sequence that ends with the value just completed

    def _step(self, data: bytes, i: int) -> int:  # noqa: C901 (one branch a frame kind)
        frame = self.stack[-1]
        b = data[i]
        if isinstance(frame, _StrFrame):
            if not frame.opened:
                if b != _QUOTE:
                    raise BadPrefix("a string must open with a quote")
                frame.opened = True
                return i + 1
            if frame.pending:
                if b & 0xC0 != 0x80:
                    raise BadPrefix("a broken UTF-8 character")
                frame.pending, frame.lead = frame.pending - 1, 0
                return i + 1
            if frame.escape:
                frame.escape = False  # \" \\ or \n: the grammar allows no other
                return i + 1
            if b == _QUOTE:
                self._pop()
                return i + 1
            if b == _BACKSLASH:
                frame.escape = True
                frame.chars += 1
                return i + 1
            if b < 0x80:
                # Plain characters up to the next quote, backslash or non-ASCII byte.
                j = i + 1
                while j < len(data) and data[j] not in _STOPS and data[j] < 0x80:
                    j += 1
                frame.chars += j - i
                return j
            frame.chars += 1 if b >= 0xC0 else 0
            frame.pending = 1 if b >= 0xC0 else 0
            frame.pending = 3 if b >= 0xF0 else 2 if b >= 0xE0 else frame.pending
            frame.lead = b
            return i + 1
        if isinstance(frame, _IntFrame):
            if b in _DIGITS:
                frame.digits += 1
                return i + 1
            if b == 0x2D and not frame.digits and not frame.sign:
                frame.sign = True
                return i + 1
            if not frame.digits:
                raise BadPrefix("a number without digits")
            self._pop()
            return i  # the byte belongs to what follows the number
        if isinstance(frame, _ArrFrame):
            if not frame.opened:
                if b != ord("["):
                    raise BadPrefix("an array must open with [")
                frame.opened = True
                return i + 1
            if frame.sep:
                if b != COMMA[frame.sep]:
                    raise BadPrefix("items are separated by ', '")
                frame.sep += 1
                if frame.sep == len(COMMA):
                    frame.sep = 0
                    self._begin_item(frame)
                return i + 1
            if b == ord("]"):
                self._pop()
                return i + 1
            if frame.count and b == COMMA[0]:
                frame.sep = 1
                return i + 1
            if frame.count:
                raise BadPrefix("after an item: ', ' or ]")
            self._begin_item(frame)
            return i  # the byte starts the first item
        seq_frame: _SeqFrame = frame
        live = []
        for seq in seq_frame.options:
            if seq_frame.index >= len(seq.items):
                continue
            item = seq.items[seq_frame.index]
            if isinstance(item, _Lit):
                if item.text[seq_frame.offset] == b:
                    live.append(seq)
            else:
                live.append(seq)
        if not live:
            raise BadPrefix(f"unexpected byte {bytes([b])!r}")
        seq_frame.options = live
        item = live[0].items[seq_frame.index]
        if isinstance(item, _Lit):
            seq_frame.offset += 1
            whole = [s for s in live if len(s.items[seq_frame.index].text) == seq_frame.offset]
            if whole:  # a text matched to its end: the candidates it ends
                seq_frame.options = whole
                seq_frame.index, seq_frame.offset = seq_frame.index + 1, 0
                if seq_frame.index == len(whole[0].items):
                    self._pop()
            return i + 1
        # A value: push its frame, which reads this byte.
        seq_frame.in_value = True
        self.stack.append(self._frame(item))
        return i

    def _begin_item(self, frame: _ArrFrame) -> None:
        frame.count += 1
        frame.in_item = True
        self.stack.append(self._frame(frame.node.item))


class Closer:
    """The schema's grammar read once, and the tokens that write an end; a `Parser` a row."""

    def __init__(
        self, schema: dict[str, Any], *, vocab: list[bytes], encode: Callable[[str], list[int]]
    ) -> None:
        self.root = _node(schema)
        self.vocab = vocab  # each token's bytes (xgrammar's decoded vocabulary)
        self.encode = encode
        # The most one token can lengthen a row's shortest end, and the longest end from
        # anywhere (the whole shortest answer with one array item begun, and that growth).
        self.growth = _growth(self.root)
        self.window = len(_shortest(self.root)) + 2 * self.growth + 4
        self._byte_tokens: dict[int, int] | None = None

    def parser(self) -> Parser:
        return Parser(self.root)

    def must_close(self, end: bytes, left: int) -> bool:
        """Whether a row whose shortest end is `end`, with `left` tokens to go (this one
        included), must start writing it now: one more free token could need more than is
        left (every token is a byte at least, and the stop token comes last)."""
        return left <= len(end) + self.growth + 2

    def steps_free(self, end: bytes, left: int) -> int:
        """Steps a row may go on before `must_close` can hold, its end now being `end`."""
        slack = left - (len(end) + self.growth + 2)
        return max(slack // (self.growth + 1), 0)

    def tokens(self, end: bytes) -> list[int]:
        """Tokens that write `end`: owed UTF-8 continuation bytes one byte-token each, then
        the tokenizer's own tokens for the ASCII rest."""
        ascii_from = next((n for n, b in enumerate(end) if b < 0x80), len(end))
        ids = []
        if ascii_from:
            if self._byte_tokens is None:
                self._byte_tokens = {v[0]: i for i, v in enumerate(self.vocab) if len(v) == 1}
            ids = [self._byte_tokens[b] for b in end[:ascii_from]]
        return ids + self.encode(end[ascii_from:].decode())
