"""The draft schema's grammar for one tokenizer, compiled by xgrammar and kept on disk.

Its strings are unbounded: a bounded string gives xgrammar a state per character, each with
its token mask (at the default bounds 240 MB, 15 to 40 s of CPU to compile over a real 151k
vocabulary and seconds to read back). The bounds are kept beside the grammar instead,
token by token (lengths.py); the grammar itself is about 1 MB and compiles in about 0.5 s,
mostly reading the vocabulary. It is kept in the engine's cache folder (the app's
<data>/cache), keyed by the schema, the tokenizer's vocabulary, the model's vocabulary size,
the xgrammar version and how strings are compiled, so the next start reads it back instead.
Loading starts it on a thread of its own (`LocalEngine.load`), beside the model's weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.engines.interface import DraftError
from app.engines.local.lengths import StringLengths
from app.engines.schema import DraftLimits, json_schema

log = logging.getLogger("atelier.drafting")

RAW_STRINGS = "raw-regex-unbounded-2"  # in the cache's key: how strings are compiled
FORMAT = "grammar-v3-"  # the kept files' names begin so; others are earlier formats, removed


@dataclass(frozen=True)
class Grammar:
    """What constrained decoding needs for one tokenizer."""

    compiled: Any  # xgrammar's CompiledGrammar: the schema, its strings unbounded
    vocab: list[bytes]  # each token's bytes, as the grammar reads them
    lengths: StringLengths  # the strings' bounds, kept beside the grammar
    keeping: threading.Thread | None  # writing it to the cache folder; join before exiting


def grammar_schema(limits: DraftLimits) -> dict[str, Any]:
    """The schema the grammar is compiled from: the draft schema without its strings'
    `maxLength`, which lengths.py keeps."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "maxLength"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(json_schema(limits, bounds="maxLength"))  # type: ignore[no-any-return]


def raw_string_grammar(xgr: Any, schema: str) -> str | None:
    """xgrammar's own grammar for the draft schema, its string patterns matched on the raw
    text between the quotes; None where its grammar has no such patterns to switch.

    The draft schema's patterns are written for the raw text (app/engines/schema.py, the
    "raw" spelling: `\\n`, `\\"` and `\\\\` as two characters each). xgrammar 0.2.9's JSON
    mode matches them on the decoded string instead and then writes no escape at all, so no
    transcription could hold a line break or a quote; in raw mode the same patterns, bounds
    included, allow exactly the escapes a caption needs."""
    text = str(xgr.Grammar.from_json_schema(schema, any_whitespace=False))
    marker = "json_string=true"
    return text.replace(marker, "json_string=false") if marker in text else None


def compile_grammar(
    tokenizer: Any, vocab_size: int, limits: DraftLimits, cache_dir: Path | None
) -> Grammar:
    """The grammar, read from `cache_dir` if kept there, else compiled (and written there on
    a thread of its own), with its vocabulary and the strings' bounds."""
    try:
        import xgrammar as xgr
    except ImportError:
        raise DraftError(
            "Constrained decoding needs xgrammar: pip install 'atelier[draft]'."
        ) from None
    schema = json.dumps(grammar_schema(limits))
    path = grammar_path(schema, tokenizer, vocab_size, cache_dir)
    compiled, keeping = None, None
    if path is not None and path.is_file():
        try:
            info_text, grammar_text = _read(path)
            info = xgr.TokenizerInfo.deserialize_json(info_text)
            compiled = xgr.CompiledGrammar.deserialize_json(grammar_text, info)
        except (OSError, ValueError, RuntimeError) as e:
            log.warning("compiling the grammar again: its cache is unreadable (%s)", e)
    if compiled is None:
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        compiler = xgr.GrammarCompiler(info)
        ebnf = raw_string_grammar(xgr, schema)
        compiled = (
            compiler.compile_grammar(ebnf)
            if ebnf is not None
            else compiler.compile_json_schema(schema, any_whitespace=False)
        )
        if path is not None:
            # Writing it out takes a moment: on a thread of its own, so the first start does
            # not wait for it; the engine's `close` does.
            keeping = threading.Thread(
                target=_keep, args=(path, info, compiled), name="atelier-grammar"
            )
            keeping.start()
    vocab = compiled.tokenizer_info.decoded_vocab
    lengths = StringLengths(vocab, shortest_bound=limits.shortest_string)
    return Grammar(compiled, vocab, lengths, keeping)


def _keep(path: Path, info: Any, compiled: Any) -> None:
    """Writes xgrammar's own two JSON texts, one after the other, behind a line giving the
    first one's length: reading them back needs no JSON parsing in Python."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_earlier(path.parent)
        part = path.with_suffix(f".{os.getpid()}.part")
        info_text = info.serialize_json().encode()
        with part.open("wb") as f:
            f.write(b"%d\n" % len(info_text))
            f.write(info_text)
            f.write(compiled.serialize_json().encode())
        part.replace(path)  # whole or absent, for a start running beside this one
    except OSError as e:
        log.warning("the compiled grammar is not kept: %s", e)


# The names earlier versions kept their grammars under (hundreds of MB each, strings bounded
# in the grammar), never read now.
_EARLIER = re.compile(r"grammar-[0-9a-f]{32}\.(json|xgrammar)")
_PART_AGE_S = 3600  # a part file this old was left by a start that stopped while writing


def _remove_earlier(folder: Path) -> None:
    """Removes the grammars earlier versions kept in `folder`, and part files a stopped
    start left; nothing else."""
    now = time.time()
    for old in folder.glob("grammar-*"):
        try:
            stale_part = old.name.endswith(".part") and now - old.stat().st_mtime > _PART_AGE_S
            if old.is_file() and (_EARLIER.fullmatch(old.name) or stale_part):
                old.unlink(missing_ok=True)
        except OSError:
            continue


def _read(path: Path) -> tuple[str, str]:
    data = path.read_bytes()
    head, _, rest = data.partition(b"\n")
    length = int(head)
    if length > len(rest):
        raise ValueError("the file is cut short")
    return rest[:length].decode(), rest[length:].decode()


def grammar_path(
    schema: str, tokenizer: Any, vocab_size: int, cache_dir: Path | None
) -> Path | None:
    """Where the grammar compiled for this schema, tokenizer, vocabulary size and
    xgrammar version is kept; None without a cache folder."""
    if cache_dir is None:
        return None
    from importlib.metadata import version

    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab())
    key = hashlib.sha256()
    for part in (schema, vocab, str(vocab_size), version("xgrammar"), RAW_STRINGS):
        key.update(part.encode())
        key.update(b"\0")
    return cache_dir / f"{FORMAT}{key.hexdigest()[:32]}.xgrammar"
