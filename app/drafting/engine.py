"""Drafting engines behind one interface: `local` (transformers on this machine's GPU) and
`openai` (any OpenAI-compatible chat server: vLLM, SGLang, Ollama, LM Studio, hosted)."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from app.captions.schema import Caption
from app.config import Settings
from app.drafting.schema import (
    DEFAULT_LIMITS,
    BoxConvention,
    DraftParseError,
    Limits,
    json_schema,
    to_caption,
)


class DraftError(Exception):
    """Drafting cannot go on; `message` says why and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class DraftInput:
    image: Image.Image  # RGB, as displayed (EXIF orientation applied)
    prompt: str


@dataclass
class DraftOutput:
    raw: str
    caption: Caption | None = None
    error: str | None = None


class Engine(Protocol):
    name: str
    convention: BoxConvention
    batch_size: int

    def draft(self, inputs: list[DraftInput]) -> list[DraftOutput]: ...

    def close(self) -> None: ...


# An engine may also have `prefetch(inputs)`: a hint, from a thread, that `draft(inputs)` (the
# same list) comes next, so it can start preparing while it drafts the batch before.


def parse_output(
    raw: str, *, convention: BoxConvention, resized: tuple[int, int] | None = None
) -> DraftOutput:
    try:
        return DraftOutput(raw, caption=to_caption(raw, convention=convention, resized=resized))
    except DraftParseError as e:
        return DraftOutput(raw, error=e.reason)


class OpenAIEngine:
    """Any OpenAI-compatible chat endpoint; the caption schema goes as `response_format`."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        convention: BoxConvention = "qwen2vl",
        batch_size: int = 8,
        max_new_tokens: int = 1024,
        timeout_s: float = 300.0,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        import httpx

        self.model = model
        self.convention = convention
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.schema = json_schema(limits.for_convention(convention))
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s
        )

    def draft(self, inputs: list[DraftInput]) -> list[DraftOutput]:
        # One request per image, sent together: the server batches them on its GPUs.
        with ThreadPoolExecutor(max_workers=max(1, len(inputs))) as pool:
            return list(pool.map(self._one, inputs))

    def _one(self, item: DraftInput) -> DraftOutput:
        import httpx

        body = {
            "model": self.model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": _data_url(item.image)}},
                        {"type": "text", "text": item.prompt},
                    ],
                }
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "caption", "schema": self.schema, "strict": True},
            },
            "temperature": 0,
            "max_tokens": self.max_new_tokens,
        }
        try:
            r = self.client.post("/chat/completions", json=body)
        except httpx.HTTPError as e:
            raise DraftError(
                f"The drafting server at {self.client.base_url} cannot be reached ({e}). "
                "Start it, or set ATELIER_DRAFT_BASE_URL to where it listens."
            ) from None
        if r.status_code in (401, 403):
            raise DraftError(
                f"The drafting server refused the key ({r.status_code}); set ATELIER_DRAFT_API_KEY."
            )
        if r.status_code == 404:
            raise DraftError(
                f"The drafting server has no model {self.model!r} or no /chat/completions "
                "endpoint (404); check ATELIER_DRAFT_MODEL and ATELIER_DRAFT_BASE_URL."
            )
        if r.status_code >= 400:
            return DraftOutput(r.text[:2000], error=f"the server answered {r.status_code}")
        try:
            choice = r.json()["choices"][0]
            raw = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            return DraftOutput(r.text[:2000], error="the server's answer is not a chat completion")
        if choice.get("finish_reason") == "length":
            return DraftOutput(raw, error="the answer was cut at the token limit")
        w, h = item.image.size
        return parse_output(raw, convention=self.convention, resized=(w, h))

    def close(self) -> None:
        self.client.close()


def _data_url(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def make_engine(
    settings: Settings,
    *,
    engine: str | None = None,
    model: str | None = None,
    batch_size: int | None = None,
) -> Engine:
    """The engine the settings (or the caller's choices) describe, loaded and ready."""
    kind = engine or settings.draft_engine
    model_id = model or settings.draft_model
    batch = batch_size or settings.draft_batch
    limits = Limits.scaled(
        max_chars=settings.draft_max_chars, max_elements=settings.draft_max_elements
    )
    if kind == "openai":
        return OpenAIEngine(
            base_url=settings.draft_base_url,
            model=model_id,
            api_key=settings.draft_api_key,
            convention=settings.draft_box_convention or "qwen2vl",
            batch_size=batch or 32,  # requests in flight at once (the default, 0: 32)
            max_new_tokens=settings.draft_max_new_tokens,
            timeout_s=settings.draft_timeout_s,
            limits=limits,
        )
    if kind != "local":
        raise DraftError(f"Unknown drafting engine {kind!r}; use local or openai.")
    from app.drafting.local import LocalEngine

    return LocalEngine.load(
        model_id,
        device=settings.draft_device,
        batch_size=batch,
        max_pixels=settings.draft_max_pixels,
        max_new_tokens=settings.draft_max_new_tokens,
        limits=limits,
        allow_download=settings.draft_allow_download,
        compile_step=settings.draft_compile,
    )
