"""The `openai` engine: any OpenAI-compatible chat server (vLLM, SGLang, Ollama, LM Studio,
a hosted API), the caption schema sent as `response_format`, images as data URLs."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from app.drafting.engine import DraftError, DraftInput, DraftOutput, parse_output
from app.drafting.schema import DEFAULT_LIMITS, BoxConvention, DraftLimits, json_schema


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
        limits: DraftLimits = DEFAULT_LIMITS,
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
