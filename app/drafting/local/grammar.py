"""The draft schema's grammar for one tokenizer, compiled by xgrammar and kept on disk.

Compiling it over a real 151k vocabulary takes 15 to 40 s of CPU, and its result is a few
hundred MB; it is kept in the engine's cache folder (the app's <data>/cache), keyed by the
schema, the tokenizer's vocabulary, the model's vocabulary size, the xgrammar version and
how strings are compiled, so the next start reads it back (about 2 s) instead. Loading starts
it on a thread of its own (`LocalEngine.load`), beside the model's weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from app.drafting.engine import DraftError
from app.drafting.schema import DraftLimits, json_schema

log = logging.getLogger("atelier.drafting")

RAW_STRINGS = "raw-string-regex-1"  # in the grammar cache's key: how strings are compiled


def raw_string_grammar(xgr: Any, schema: str) -> str | None:
    """xgrammar's own grammar for the draft schema, its string patterns matched on the raw
    text between the quotes; None where its grammar has no such patterns to switch.

    The draft schema's patterns are written for the raw text (app/drafting/schema.py, the
    "raw" spelling: `\\n`, `\\"` and `\\\\` as two characters each). xgrammar 0.2.9's JSON
    mode matches them on the decoded string instead and then writes no escape at all, so no
    transcription could hold a line break or a quote; in raw mode the same patterns, bounds
    included, allow exactly the escapes a caption needs."""
    text = str(xgr.Grammar.from_json_schema(schema, any_whitespace=False))
    marker = "json_string=true"
    return text.replace(marker, "json_string=false") if marker in text else None


def compile_grammar(
    tokenizer: Any, vocab_size: int, limits: DraftLimits, cache_dir: Path | None
) -> tuple[Any, threading.Thread | None]:
    """The compiled grammar, read from `cache_dir` if kept there, and the thread that is
    writing it there when it was compiled now (None otherwise; join it before exiting)."""
    try:
        import xgrammar as xgr
    except ImportError:
        raise DraftError(
            "Constrained decoding needs xgrammar: pip install 'atelier[draft]'."
        ) from None
    schema = json.dumps(json_schema(limits))
    path = grammar_path(schema, tokenizer, vocab_size, cache_dir)
    if path is not None and path.is_file():
        try:
            info_text, grammar_text = _read(path)
            info = xgr.TokenizerInfo.deserialize_json(info_text)
            return xgr.CompiledGrammar.deserialize_json(grammar_text, info), None
        except (OSError, ValueError, RuntimeError) as e:
            log.warning("compiling the grammar again: its cache is unreadable (%s)", e)
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
    compiler = xgr.GrammarCompiler(info)
    ebnf = raw_string_grammar(xgr, schema)
    compiled = (
        compiler.compile_grammar(ebnf)
        if ebnf is not None
        else compiler.compile_json_schema(schema, any_whitespace=False)
    )
    keeping = None
    if path is not None:
        # Writing it out takes seconds: on a thread of its own, so the first start does not
        # wait for it; the engine's `close` does.
        keeping = threading.Thread(
            target=_keep, args=(path, info, compiled), name="atelier-grammar"
        )
        keeping.start()
    return compiled, keeping


def _keep(path: Path, info: Any, compiled: Any) -> None:
    """Writes xgrammar's own two JSON texts, one after the other, behind a line giving the
    first one's length: reading them back needs no JSON parsing in Python (which holds the
    interpreter for seconds at this size, while the weights load)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for old in path.parent.glob("grammar-*.json"):  # the earlier format, never read now
            old.unlink(missing_ok=True)
        part = path.with_suffix(f".{os.getpid()}.part")
        info_text = info.serialize_json().encode()
        with part.open("wb") as f:
            f.write(b"%d\n" % len(info_text))
            f.write(info_text)
            f.write(compiled.serialize_json().encode())
        part.replace(path)  # whole or absent, for a start running beside this one
    except OSError as e:
        log.warning("the compiled grammar is not kept: %s", e)


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
    return cache_dir / f"grammar-{key.hexdigest()[:32]}.xgrammar"
