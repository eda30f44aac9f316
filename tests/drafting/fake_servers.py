"""Local chat servers on 127.0.0.1 that behave as the real ones do where it matters to Atelier.

Each `FakeServer` speaks one dialect's error bodies (as the servers' code writes them) and can
be told to refuse a parameter, answer busy, serve one request at a time (Ollama's one slot),
be slow, or die after some answers. It records every request it was sent.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.browser.conftest import free_port

Dialect = Literal["vllm", "sglang", "ollama", "llamacpp", "lmstudio", "openai"]

DRAFT: dict[str, Any] = {
    "high_level_description": "a man at a table",
    "style_description": {
        "aesthetics": "baroque",
        "lighting": "candle",
        "medium": "painting",
        "technique": "oil",
    },
    "compositional_deconstruction": {
        "background": "dark room",
        "elements": [{"type": "obj", "bbox_2d": [100, 200, 300, 600], "desc": "a man"}],
    },
}


def error_body(dialect: Dialect, status: int, message: str, param: str | None = None) -> dict:
    """An error as each server writes it."""
    if dialect in ("vllm", "sglang"):
        # vLLM's and SGLang's ErrorResponse: flat, "object": "error".
        return {
            "object": "error",
            "message": message,
            "type": "BadRequestError",
            "param": param,
            "code": status,
        }
    if dialect == "llamacpp":
        return {"error": {"code": status, "message": message, "type": "invalid_request_error"}}
    if dialect == "ollama":
        return {"error": {"message": message, "type": "invalid_request_error", "param": None}}
    if dialect == "lmstudio":
        return {"error": message}
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": "unsupported_parameter" if param else None,
        }
    }


OWNED_BY = {
    "vllm": "vllm",
    "sglang": "sglang",
    "ollama": "library",
    "llamacpp": "llamacpp",
    "lmstudio": "organization_owner",
    "openai": "system",
}


@dataclass
class FakeServer:
    dialect: Dialect = "vllm"
    models: list[str] = field(default_factory=lambda: ["qwen2-vl-7b"])
    api_key: str | None = None
    delay_s: float = 0.0
    late: dict[int, float] = field(default_factory=dict)  # request number: seconds it adds
    slots: int | None = None  # requests served at once; the rest wait their turn
    refuse_max_tokens: bool = False  # OpenAI's current models
    refuse_temperature_zero: bool = False  # OpenAI's reasoning models
    refuse_schema: str | None = None  # the message of a 400 for every request
    busy: list[tuple[int, str | None]] = field(default_factory=list)  # (status, Retry-After)
    die_after: int | None = None  # answers before the server stops listening
    content: Callable[[dict], str] = lambda body: json.dumps(DRAFT)
    # Token log probabilities for an answer, as OpenAI's chat API gives them when the request
    # asks for `logprobs` (None: the server gives none, as LM Studio).
    logprobs: Callable[[dict, str], list[dict] | None] | None = None
    # A second reading's text (requests whose schema is named "reading").
    reading: Callable[[dict], str] = lambda body: ""
    requests: list[dict] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    answered: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    url: str = ""
    _stop: Callable[[], None] | None = None

    def app(self) -> FastAPI:
        app = FastAPI()
        slots = asyncio.Semaphore(self.slots) if self.slots else None

        @app.get("/v1/models")
        async def models() -> dict:
            return {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "owned_by": OWNED_BY[self.dialect]}
                    for m in self.models
                ],
            }

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await request.json()
            number = len(self.requests)
            self.requests.append(body)
            self.arrivals.append(time.monotonic())
            if self.die_after is not None and self.answered >= self.die_after:
                # Dead: the connection drops mid-answer, as when the process is killed,
                # until the server has stopped listening (uvicorn notices every 0.1 s).
                return StreamingResponse(_broken(), media_type="application/json")
            if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
                return self._error(401, "Incorrect API key provided.")
            if body.get("model") not in self.models:
                return self._error(404, f"The model `{body.get('model')}` does not exist.")
            if self.busy:
                status, after = self.busy.pop(0)
                headers = {"Retry-After": after} if after else {}
                return JSONResponse(
                    error_body(self.dialect, status, "Server is busy, try again."),
                    status_code=status,
                    headers=headers,
                )
            if self.refuse_schema:
                return self._error(400, self.refuse_schema)
            if self.refuse_max_tokens and "max_tokens" in body:
                return self._error(
                    400,
                    "Unsupported parameter: 'max_tokens' is not supported with this model. "
                    "Use 'max_completion_tokens' instead.",
                    "max_tokens",
                )
            if self.refuse_temperature_zero and body.get("temperature", 1) != 1:
                return self._error(
                    400,
                    "Unsupported value: 'temperature' does not support 0 with this model. Only "
                    "the default (1) value is supported.",
                    "temperature",
                )
            if slots is not None:
                async with slots:
                    return await self._answer(body, self.late.get(number, 0.0))
            return await self._answer(body, self.late.get(number, 0.0))

        return app

    def _error(self, status: int, message: str, param: str | None = None) -> JSONResponse:
        return JSONResponse(error_body(self.dialect, status, message, param), status_code=status)

    async def _answer(self, body: dict, late_s: float = 0.0) -> Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s or late_s:
                await asyncio.sleep(self.delay_s + late_s)
            schema = body.get("response_format", {}).get("json_schema", {})
            if schema.get("name") == "reading":
                content = json.dumps({"text": self.reading(body)})
            else:
                content = self.content(body)
        finally:
            self.in_flight -= 1
        self.answered += 1
        if self.die_after is not None and self.answered >= self.die_after and self._stop:
            self._stop()
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }
        if body.get("logprobs") and self.logprobs is not None:
            choice["logprobs"] = {"content": self.logprobs(body, content)}
        return JSONResponse(
            {
                "id": f"chatcmpl-{self.answered}",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [choice],
            }
        )


async def _broken() -> AsyncIterator[bytes]:
    yield b'{"id": '
    raise ConnectionAbortedError("the fake server died")


@contextmanager
def serving(*servers: FakeServer) -> Iterator[list[str]]:
    """Runs each server on a free port of 127.0.0.1; yields their base URLs (…/v1)."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []
    try:
        for fake in servers:
            port = free_port()
            uv = uvicorn.Server(
                uvicorn.Config(
                    fake.app(), host="127.0.0.1", port=port, log_level="critical", lifespan="off"
                )
            )
            thread = threading.Thread(target=uv.run, daemon=True)
            thread.start()
            fake.url = f"http://127.0.0.1:{port}/v1"

            def stop(uv: uvicorn.Server = uv) -> None:
                uv.should_exit = True

            fake._stop = stop
            for _ in range(200):
                try:
                    httpx.get(f"{fake.url}/models", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.02)
            running.append((uv, thread))
        yield [fake.url for fake in servers]
    finally:
        for uv, _ in running:
            uv.should_exit = True
        for _, thread in running:
            thread.join(timeout=10)
