"""The `openai` engine: any OpenAI-compatible chat server (vLLM, SGLang, Ollama, llama.cpp's
server, LM Studio, a hosted API), the caption schema sent as `response_format`, images as data
URLs, across one or several servers.

What the servers really do, and what this engine does about it:
- Each server is sent as many requests at once as it answers without slowing down: one at
  first, doubled while a full round of answers comes back within `GROWTH_OK` times the
  fastest answer (a server that batches, like vLLM), settled one step back once
  `SLOW_ROUNDS` rounds in a row are slower (a server that queues, like Ollama with one slot,
  is slower every round; one late answer is the network or a busy client). A setting fixes
  it.
- Requests go to the server with the most room (in flight against its limit); a server that
  cannot be reached or does not answer in time is set aside and its images go to the others.
- 429 and 503 are retried with backoff, honouring Retry-After; any other 4xx stops the job
  with a sentence quoting the server, except a parameter refusal (`max_tokens` where
  `max_completion_tokens` is wanted, a refused `temperature`), retried once as it asks.
"""

from __future__ import annotations

import base64
import email.utils
import io
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from PIL import Image

from app.engines.interface import (
    READ_PROMPT,
    DraftError,
    DraftInput,
    DraftOutput,
    Engine,
    parse_output,
)
from app.engines.schema import (
    DEFAULT_LIMITS,
    BoxConvention,
    DraftLimits,
    Escapes,
    json_schema,
    token_budget,
)

TokenParam = Literal["max_tokens", "max_completion_tokens"]

MAX_IN_FLIGHT = 64  # per server, when learnt
GROWTH_OK = 1.6  # a round this much slower than the fastest answer: the server queues
SLOW_ROUNDS = 2  # slow rounds in a row before the limit settles
MAX_RETRIES = 5  # for 429 and 503
MAX_BACKOFF_S = 60.0
SET_ASIDE_S = 60.0  # a server set aside gets a request again after this long
THREADS = 256  # requests waiting for a server at most, per draft() call
# A second reading: only the text, as long as a draft's text field may be.
READ_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string", "maxLength": 400}},
    "required": ["text"],
    "additionalProperties": False,
}
READ_TOKENS = 400


def split_urls(value: str) -> list[str]:
    """The servers of ATELIER_DRAFT_BASE_URL: one URL, or several separated by commas or spaces."""
    urls = [u.strip().rstrip("/") for u in re.split(r"[,\s]+", value) if u.strip()]
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise DraftError(
                f"{url!r} in ATELIER_DRAFT_BASE_URL is not a server address; write it as "
                "http://host:port/v1, several separated by commas."
            )
    if not urls:
        raise DraftError("ATELIER_DRAFT_BASE_URL is empty; set it to http://host:port/v1.")
    return urls


def is_openai(url: str) -> bool:
    return urlsplit(url).hostname == "api.openai.com"


@dataclass
class Server:
    """One server: its limit of requests in flight, and what it did for the current job."""

    url: str
    limit: int
    learning: bool
    in_flight: int = 0
    done: int = 0
    failed: int = 0
    fastest_s: float | None = None
    round_answers: int = 0
    round_slowest_s: float = 0.0
    slow_rounds: int = 0  # slow rounds in a row at this limit
    busy_s: float = 0.0  # time with at least one request in flight
    busy_since: float | None = None
    set_aside: str | None = None  # why, while set aside
    set_aside_at: float = 0.0

    def answered(self, latency: float) -> None:
        """Learns the limit from answers: doubled after a full round that is not slower,
        settled one step back after `SLOW_ROUNDS` slower rounds in a row."""
        if not self.learning:
            return
        if self.fastest_s is None or latency < self.fastest_s:
            self.fastest_s = latency
        self.round_answers += 1
        self.round_slowest_s = max(self.round_slowest_s, latency)
        if self.round_answers < self.limit:
            return
        slow = self.round_slowest_s > GROWTH_OK * self.fastest_s
        self.round_answers, self.round_slowest_s = 0, 0.0
        self.slow_rounds = self.slow_rounds + 1 if slow else 0
        if not slow and self.limit < MAX_IN_FLIGHT:
            self.limit *= 2
        elif not slow:  # as many as it may be sent
            self.learning = False
        elif self.slow_rounds >= SLOW_ROUNDS:
            self.limit = max(1, self.limit // 2)
            self.learning = False

    def rate(self, now: float) -> float | None:
        busy = self.busy_s + (now - self.busy_since if self.busy_since is not None else 0.0)
        return self.done / busy if busy > 0 and self.done else None

    def stats(self, now: float) -> dict[str, Any]:
        rate = self.rate(now)
        return {
            "url": self.url,
            "in_flight": self.limit,
            "learning": self.learning,
            "done": self.done,
            "failed": self.failed,
            "images_per_s": round(rate, 3) if rate else None,
            "set_aside": self.set_aside,
        }


class _SetAside(Exception):
    """The server cannot draft now; the image goes to another."""

    def __init__(self, reason: str, sentence: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sentence = sentence


class OpenAIEngine(Engine):
    """Any OpenAI-compatible chat endpoint; the caption schema goes as `response_format`."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str | list[str],
        model: str,
        api_key: str | None = None,
        convention: BoxConvention = "qwen2vl",
        batch_size: int = 0,
        in_flight: int = 0,
        max_new_tokens: int = 0,
        timeout_s: float = 300.0,
        limits: DraftLimits = DEFAULT_LIMITS,
        escapes: Escapes | None = None,
        token_param: TokenParam | None = None,
        temperature: float | None = 0.0,
    ) -> None:
        urls = split_urls(base_url) if isinstance(base_url, str) else base_url
        self.model = model
        self.convention = convention
        self._batch_size = batch_size
        self.limits = limits.for_convention(convention)
        self.max_new_tokens = max_new_tokens or token_budget(self.limits)
        self.timeout_s = timeout_s
        hosted = all(is_openai(u) for u in urls)
        # Hosted OpenAI reads a pattern as JSON Schema means it; the servers people run read
        # it as written (app/engines/schema.py).
        self.escapes: Escapes = escapes or ("decoded" if hosted else "raw")
        self.schema = json_schema(self.limits, escapes=self.escapes)
        # Ollama reads only max_tokens; OpenAI's current models only max_completion_tokens.
        self.token_param: TokenParam = token_param or (
            "max_completion_tokens" if hosted else "max_tokens"
        )
        self.temperature = temperature
        # Token log probabilities give each field's confidence; asked for until a server
        # refuses them (vLLM, SGLang, llama.cpp's server and OpenAI's chat models give them).
        self.logprobs = True
        self.servers = [Server(u, in_flight or 1, learning=not in_flight) for u in urls]
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
        self._lock = threading.Condition()
        self._fatal: DraftError | None = None
        self._refused: set[str] = set()  # parameters a server refused and that were adapted

    @property
    def batch_size(self) -> int:
        """Images per batch: twice what the servers take at once, so none waits for work."""
        if self._batch_size:
            return self._batch_size
        with self._lock:
            room = sum(s.limit for s in self.servers if s.set_aside is None)
        return max(8, 2 * room)

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._batch_size = value

    def draft(self, inputs: list[DraftInput]) -> list[DraftOutput]:
        with self._lock:
            self._fatal = None
            now = time.monotonic()
            for s in self.servers:
                if s.set_aside is not None and now - s.set_aside_at > SET_ASIDE_S:
                    s.set_aside = None
        with ThreadPoolExecutor(max_workers=max(1, min(len(inputs), THREADS))) as pool:
            return list(pool.map(self._one, inputs))

    def read_texts(self, crops: list[Image.Image]) -> list[str | None]:
        """Each crop's text read alone, with a schema that holds only the text."""
        inputs = [DraftInput(crop, READ_PROMPT) for crop in crops]
        with ThreadPoolExecutor(max_workers=max(1, min(len(inputs), THREADS))) as pool:
            outputs = list(pool.map(lambda item: self._one(item, reading=True), inputs))
        return [None if out.error else out.raw for out in outputs]

    def new_job(self) -> None:
        """Counts each server's images and speed from zero: the worker keeps an engine for
        the next job, whose progress is its own. What was learned (the limits in flight, who
        is set aside) carries over."""
        now = time.monotonic()
        with self._lock:
            for s in self.servers:
                s.done = s.failed = 0
                s.busy_s = 0.0
                s.busy_since = now if s.busy_since is not None else None

    def server_stats(self) -> list[dict[str, Any]]:
        """Each server's limit in flight, images done and images/s, and why it was set aside."""
        now = time.monotonic()
        with self._lock:
            return [s.stats(now) for s in self.servers]

    def close(self) -> None:
        self.client.close()

    # One image

    def _one(self, item: DraftInput, reading: bool = False) -> DraftOutput:
        url = _data_url(item.image)
        while True:
            server = self._acquire()
            started = time.monotonic()
            try:
                out = self._ask(server, item, url, reading)
            except _SetAside as e:
                self._release(server, set_aside=e)
                continue
            except DraftError as e:
                self._release(server, fatal=e)
                raise
            except BaseException:
                self._release(server)
                raise
            if reading:  # not an image drafted: the server's figures leave it out
                self._release(server)
            else:
                self._release(
                    server, latency=time.monotonic() - started, ok=out.caption is not None
                )
            return out

    def _acquire(self) -> Server:
        """The live server with the most room, waiting for room; a DraftError when none is left."""
        with self._lock:
            while True:
                if self._fatal is not None:
                    raise self._fatal
                live = [s for s in self.servers if s.set_aside is None]
                if not live:
                    raise self._none_left()
                free = [s for s in live if s.in_flight < s.limit]
                if free:
                    server = min(free, key=lambda s: (s.in_flight / s.limit, -s.limit))
                    if server.in_flight == 0:
                        server.busy_since = time.monotonic()
                    server.in_flight += 1
                    return server
                self._lock.wait()

    def _release(
        self,
        server: Server,
        *,
        latency: float | None = None,
        ok: bool = False,
        set_aside: _SetAside | None = None,
        fatal: DraftError | None = None,
    ) -> None:
        with self._lock:
            server.in_flight -= 1
            if server.in_flight == 0 and server.busy_since is not None:
                server.busy_s += time.monotonic() - server.busy_since
                server.busy_since = None
            if latency is not None:
                server.done += ok
                server.failed += not ok
                server.answered(latency)
            if set_aside is not None and server.set_aside is None:
                server.set_aside, server.set_aside_at = set_aside.sentence, time.monotonic()
            if fatal is not None and self._fatal is None:
                self._fatal = fatal
            self._lock.notify_all()

    def _none_left(self) -> DraftError:
        reasons = [s.set_aside for s in self.servers if s.set_aside]
        if len(reasons) == 1:
            return DraftError(reasons[0] or "The drafting server cannot draft.")
        return DraftError("No drafting server can draft: " + " ".join(r for r in reasons if r))

    def _body(self, item: DraftInput, url: str, reading: bool = False) -> dict[str, Any]:
        schema = (
            {"name": "reading", "schema": READ_SCHEMA, "strict": True}
            if reading
            else {"name": "caption", "schema": self.schema, "strict": True}
        )
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": url}},
                        {"type": "text", "text": item.prompt},
                    ],
                }
            ],
            "response_format": {"type": "json_schema", "json_schema": schema},
            self.token_param: READ_TOKENS if reading else self.max_new_tokens,
        }
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.logprobs and not reading:
            body["logprobs"] = True
        return body

    def _ask(self, server: Server, item: DraftInput, url: str, reading: bool) -> DraftOutput:
        retries = 0
        adapted: set[str] = set()
        while True:
            r = self._post(server, self._body(item, url, reading))
            if r.status_code in (429, 503):
                message = server_message(r)
                if retries >= MAX_RETRIES:
                    raise _SetAside(
                        "busy",
                        f"The drafting server at {server.url} stayed busy ({r.status_code}: "
                        f"{message}) after {MAX_RETRIES} retries; try again later, or give it "
                        "fewer requests at once (ATELIER_DRAFT_IN_FLIGHT).",
                    )
                time.sleep(retry_after(r, retries))
                retries += 1
                continue
            if 400 <= r.status_code < 500:
                change = self._adapt(r, adapted)
                if change is not None:
                    adapted.add(change)
                    continue
                raise refusal(server.url, self.model, r)
            if r.status_code >= 400:
                # A server error on one image: the pipeline drafts it once more.
                return DraftOutput(
                    r.text[:2000],
                    error=f"the server answered {r.status_code}: {server_message(r)}",
                )
            return self._reading(r) if reading else self._output(r, item)

    def _post(self, server: Server, body: dict[str, Any]) -> httpx.Response:
        try:
            return self.client.post(f"{server.url}/chat/completions", json=body)
        except httpx.TimeoutException as e:
            if isinstance(e, httpx.ConnectTimeout):
                raise self._unreachable(server, e) from None
            with self._lock:
                others = server.in_flight - 1
            raise _SetAside(
                "timeout",
                f"The drafting server at {server.url} did not answer within "
                f"{self.timeout_s:g} s ({others + 1} request{'s' if others else ''} were in "
                "flight there). Give it longer (ATELIER_DRAFT_TIMEOUT_S) or fewer requests at "
                "once (ATELIER_DRAFT_IN_FLIGHT; Ollama answers one at a time unless "
                "OLLAMA_NUM_PARALLEL is set).",
            ) from None
        except httpx.HTTPError as e:
            raise self._unreachable(server, e) from None

    def _unreachable(self, server: Server, e: Exception) -> _SetAside:
        return _SetAside(
            "unreachable",
            f"The drafting server at {server.url} cannot be reached ({e or type(e).__name__}). "
            "Start it, or set ATELIER_DRAFT_BASE_URL to where it listens.",
        )

    def _adapt(self, r: httpx.Response, adapted: set[str]) -> str | None:
        """The parameter a refusal names, changed as the server asks; None if it names none."""
        message = server_message(r).lower()
        with self._lock:
            if "max_tokens" in message and "max_completion_tokens" in message:
                if "tokens" in adapted:
                    return None
                # Whichever it refused, send the other.
                wanted: TokenParam = (
                    "max_completion_tokens" if self.token_param == "max_tokens" else "max_tokens"
                )
                self.token_param = wanted
                self._refused.add("tokens")
                return "tokens"
            if "logprobs" in message and self.logprobs:
                self.logprobs = False  # drafts go on without confidences
                self._refused.add("logprobs")
                return "logprobs"
            if "temperature" in message and self.temperature is not None:
                if "temperature" in adapted:
                    return None
                self.temperature = None  # the model's default, the only one it takes
                self._refused.add("temperature")
                return "temperature"
        return None

    def _output(self, r: httpx.Response, item: DraftInput) -> DraftOutput:
        try:
            choice = r.json()["choices"][0]
            raw = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            return DraftOutput(r.text[:2000], error="the server's answer is not a chat completion")
        if choice.get("finish_reason") == "length":
            return DraftOutput(raw, error="the answer was cut at the token limit")
        w, h = item.image.size
        return parse_output(raw, convention=self.convention, resized=(w, h), tokens=_tokens(choice))

    def _reading(self, r: httpx.Response) -> DraftOutput:
        """A second reading's text as `raw`, or an error."""
        try:
            content = r.json()["choices"][0]["message"]["content"] or ""
            text = json.loads(content)["text"]
        except (ValueError, KeyError, IndexError, TypeError):
            return DraftOutput(r.text[:2000], error="the reading is not the text asked for")
        if not isinstance(text, str):
            return DraftOutput(content, error="the server's reading is not a text")
        return DraftOutput(text)


def _tokens(choice: dict[str, Any]) -> list[tuple[bytes, float]] | None:
    """The sampled tokens' bytes and log probabilities, as OpenAI's chat API gives them
    (`logprobs.content`); None when the server sent none or they are not what was asked."""
    try:
        content = (choice.get("logprobs") or {}).get("content")
        if not content:
            return None
        return [
            (
                bytes(t["bytes"]) if t.get("bytes") is not None else str(t["token"]).encode(),
                float(t["logprob"]),
            )
            for t in content
        ]
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def server_message(r: httpx.Response) -> str:
    """The server's own words from an error body, whatever its dialect."""
    try:
        data = r.json()
    except ValueError:
        return r.text.strip()[:500] or r.reason_phrase
    return _message_in(data) or r.text.strip()[:500]


def _message_in(data: Any) -> str:
    # OpenAI, vLLM, SGLang, llama.cpp, LM Studio: {"error": {"message": ...}}; Ollama:
    # {"error": "..."}; older vLLM: {"object": "error", "message": ...}; FastAPI: {"detail": ...}.
    if isinstance(data, str):
        return data.strip()[:500]
    if isinstance(data, dict):
        for key in ("error", "message", "detail", "msg"):
            if key in data:
                found = _message_in(data[key])
                if found:
                    return found
    if isinstance(data, list) and data:
        return "; ".join(filter(None, (_message_in(d) for d in data[:3])))
    return ""


def retry_after(r: httpx.Response, attempt: int) -> float:
    """How long to wait before retrying: the server's Retry-After, else doubling from 1 s."""
    value = r.headers.get("retry-after", "").strip()
    if value:
        try:
            return min(MAX_BACKOFF_S, max(0.0, float(value)))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value) if value else None
            if when is not None:
                return min(MAX_BACKOFF_S, max(0.0, when.timestamp() - time.time()))
    return min(MAX_BACKOFF_S, 2.0**attempt)


def refusal(url: str, model: str, r: httpx.Response) -> DraftError:
    """The job-stopping sentence for a 4xx, quoting the server."""
    message = server_message(r)
    quoted = message.rstrip(". ")  # inside parentheses, before the sentence's own end
    if r.status_code in (401, 403):
        return DraftError(
            f"The drafting server at {url} refused the key ({r.status_code}: {quoted}); "
            "set ATELIER_DRAFT_API_KEY."
        )
    if r.status_code == 404:
        return DraftError(
            f"The drafting server at {url} has no model {model!r} or no /chat/completions "
            f"endpoint (404: {quoted}); check ATELIER_DRAFT_MODEL and ATELIER_DRAFT_BASE_URL."
        )
    hint = ""
    lowered = message.lower()
    if "schema" in lowered or "grammar" in lowered or "xgrammar" in lowered:
        hint = (
            " Its structured-output backend does not take the caption schema: on vLLM, start "
            "it with the guidance backend (--structured-outputs-config.backend guidance; older "
            "releases: --guided-decoding-backend guidance)."
        )
    elif "context" in lowered or "too long" in lowered or "maximum" in lowered:
        hint = " Lower ATELIER_DRAFT_MAX_PIXELS or ATELIER_DRAFT_MAX_NEW_TOKENS, or raise the "
        hint += "server's context length."
    return DraftError(
        f"The drafting server at {url} refused the request ({r.status_code}): “{message}”. "
        f"The job stopped.{hint}"
    )


def list_models(
    urls: list[str], *, api_key: str | None = None, timeout_s: float = 3.0
) -> list[tuple[str, list[str], str | None]]:
    """Each server's models from /v1/models, or the sentence saying why it could not list them."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    found: list[tuple[str, list[str], str | None]] = []
    with httpx.Client(headers=headers, timeout=timeout_s) as client:
        for url in urls:
            try:
                r = client.get(f"{url}/models")
            except httpx.HTTPError as e:
                found.append((url, [], f"cannot be reached: {e or type(e).__name__}"))
                continue
            if r.status_code >= 400:
                found.append((url, [], f"answered {r.status_code}: {server_message(r)}"))
                continue
            try:
                data = r.json().get("data") or []
                ids = [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
            except (ValueError, AttributeError, TypeError):
                found.append((url, [], "did not answer with a list of models"))
                continue
            found.append((url, ids, None))
    return found


def _data_url(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
