"""The openai engine against a local server that speaks the OpenAI chat completions API."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image

from app.drafting.engine import DraftError, DraftInput
from app.drafting.openai_engine import OpenAIEngine
from tests.browser.conftest import free_port

DRAFT = {
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


class ChatServer:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append(body)
            if request.headers.get("authorization") != "Bearer sesame":
                return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
            if body["model"] == "missing":
                return JSONResponse({"error": {"message": "no such model"}}, status_code=404)
            finish, content = "stop", json.dumps(DRAFT)
            if body["model"] == "cut":
                finish, content = "length", content[:40]
            return JSONResponse(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": finish,
                        }
                    ],
                }
            )

        self.app = app


@pytest.fixture
def chat_server() -> Iterator[tuple[str, ChatServer]]:
    server = ChatServer()
    port = free_port()
    uv = uvicorn.Server(
        uvicorn.Config(server.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(100):
        try:
            httpx.post(f"{url}/chat/completions", json={}, timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    server.requests.clear()
    yield url, server
    uv.should_exit = True
    thread.join(timeout=10)


def inputs(n: int) -> list[DraftInput]:
    return [
        DraftInput(Image.new("RGB", (400, 300), (200, 20, 20)), f"prompt {i}") for i in range(n)
    ]


def test_drafts_with_schema_and_image(chat_server: tuple[str, ChatServer]) -> None:
    url, server = chat_server
    engine = OpenAIEngine(base_url=url, model="qwen2-vl-72b", api_key="sesame")
    outs = engine.draft(inputs(3))
    assert [o.error for o in outs] == [None, None, None]
    c = outs[0].caption
    assert c is not None and c.composition.elements[0].box is not None
    assert [round(v, 3) for v in c.composition.elements[0].box] == [0.1, 0.2, 0.3, 0.6]
    assert len(server.requests) == 3
    body = server.requests[0]
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert "compositional_deconstruction" in fmt["json_schema"]["schema"]["properties"]
    image, text = body["messages"][0]["content"]
    assert text["type"] == "text" and text["text"].startswith("prompt")
    header, data = image["image_url"]["url"].split(",", 1)
    assert header == "data:image/jpeg;base64"
    assert Image.open(io.BytesIO(base64.b64decode(data))).size == (400, 300)
    assert body["temperature"] == 0


def test_cut_answers_and_server_errors(chat_server: tuple[str, ChatServer]) -> None:
    url, _ = chat_server
    cut = OpenAIEngine(base_url=url, model="cut", api_key="sesame").draft(inputs(1))[0]
    assert cut.caption is None and cut.error == "the answer was cut at the token limit"
    with pytest.raises(DraftError, match="refused the key"):
        OpenAIEngine(base_url=url, model="m", api_key="wrong").draft(inputs(1))
    with pytest.raises(DraftError, match="no model 'missing'"):
        OpenAIEngine(base_url=url, model="missing", api_key="sesame").draft(inputs(1))


def test_unreachable_server_says_so() -> None:
    engine = OpenAIEngine(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m")
    with pytest.raises(DraftError, match="cannot be reached"):
        engine.draft(inputs(1))
