"""The openai engine against local servers speaking each server's dialect of the chat API:
their error bodies, parameter refusals, busy answers, one slow slot, a server that dies
mid-job, a server that does not answer, and several servers at once."""

from __future__ import annotations

import base64
import io
import time

import httpx
import pytest
from PIL import Image

from app.config import Settings
from app.drafting.open_engine import open_engine
from app.engines.interface import DraftError, DraftInput
from app.engines.openai_engine import (
    MAX_IN_FLIGHT,
    OpenAIEngine,
    Server,
    list_models,
    retry_after,
    split_urls,
)
from app.engines.schema import DraftLimits, token_budget
from tests.browser.conftest import free_port
from tests.drafting.fake_servers import FakeServer, serving


def inputs(n: int) -> list[DraftInput]:
    return [
        DraftInput(Image.new("RGB", (400, 300), (200, 20, 20)), f"prompt {i}") for i in range(n)
    ]


def engine(urls: list[str] | str, **kw) -> OpenAIEngine:  # type: ignore[no-untyped-def]
    return OpenAIEngine(base_url=urls, model=kw.pop("model", "qwen2-vl-7b"), **kw)


def test_drafts_with_schema_and_image() -> None:
    fake = FakeServer("vllm", api_key="sesame")
    with serving(fake) as urls:
        outs = engine(urls, api_key="sesame").draft(inputs(3))
    assert [o.error for o in outs] == [None, None, None]
    c = outs[0].caption
    assert c is not None and c.composition.elements[0].box is not None
    assert [round(v, 3) for v in c.composition.elements[0].box] == [0.1, 0.2, 0.3, 0.6]
    assert len(fake.requests) == 3
    body = fake.requests[0]
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert "compositional_deconstruction" in fmt["json_schema"]["schema"]["properties"]
    image, text = body["messages"][0]["content"]
    assert text["type"] == "text" and text["text"].startswith("prompt")
    header, data = image["image_url"]["url"].split(",", 1)
    assert header == "data:image/jpeg;base64"
    assert Image.open(io.BytesIO(base64.b64decode(data))).size == (400, 300)
    assert body["temperature"] == 0
    # The budget comes from the schema's bounds, not a fixed 1,024.
    assert body["max_tokens"] == token_budget(DraftLimits().for_convention("qwen2vl")) > 1024
    assert "max_completion_tokens" not in body


def test_key_model_and_cut_answers() -> None:
    fake = FakeServer("openai", api_key="sesame")
    with serving(fake) as urls:
        with pytest.raises(DraftError, match="refused the key .*Incorrect API key"):
            engine(urls, api_key="wrong").draft(inputs(1))
        with pytest.raises(DraftError, match="no model 'missing'.*does not exist"):
            engine(urls, api_key="sesame", model="missing").draft(inputs(1))
        fake.content = lambda body: '{"high_level_description": "cut'
        out = engine(urls, api_key="sesame").draft(inputs(1))[0]
    assert out.caption is None and out.error and "not complete JSON" in out.error


def test_unreachable_server_says_so() -> None:
    with pytest.raises(DraftError, match="cannot be reached.*Start it"):
        engine(f"http://127.0.0.1:{free_port()}/v1").draft(inputs(1))


@pytest.mark.parametrize(
    ("dialect", "message"),
    [
        ("vllm", "The provided JSON schema contains features not supported by xgrammar."),
        ("sglang", "Grammar compilation failed: unsupported regex."),
        ("llamacpp", "Failed to parse grammar"),
        ("ollama", "invalid format: json schema is not valid"),
        ("lmstudio", "Invalid 'response_format': schema too deep"),
    ],
)
def test_a_refusal_stops_the_job_quoting_the_server(dialect: str, message: str) -> None:
    fake = FakeServer(dialect, refuse_schema=message)  # type: ignore[arg-type]
    with serving(fake) as urls:
        e = engine(urls, in_flight=2)
        with pytest.raises(DraftError) as caught:
            e.draft(inputs(6))
    assert f"“{message}”" in caught.value.message and "(400)" in caught.value.message
    assert "The job stopped" in caught.value.message
    # Not retried image after image: the others stop as soon as one is refused.
    assert len(fake.requests) <= 2


def test_a_4xx_through_the_pipeline_fails_the_job(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.drafting.remote_jobs import draft_dataset

    fake = FakeServer(
        "vllm",
        refuse_schema="The provided JSON schema contains features not supported by xgrammar.",
    )
    with serving(fake) as urls:
        job, _ = draft_dataset(tmp_path, urls, images=4)
    assert job.status.value == "failed" and job.done == 0
    assert "not supported by xgrammar" in (job.error or "")
    assert len(fake.requests) <= 2


def test_openai_parameter_refusals_are_adapted_once() -> None:
    fake = FakeServer("openai", refuse_max_tokens=True, refuse_temperature_zero=True)
    with serving(fake) as urls:
        e = engine(urls, in_flight=1)
        outs = e.draft(inputs(3))
    assert [o.error for o in outs] == [None, None, None]
    last = fake.requests[-1]
    assert "max_tokens" not in last and last["max_completion_tokens"] == e.max_new_tokens
    assert "temperature" not in last
    # The first image paid for the two refusals; the others were sent as the server wants.
    assert len(fake.requests) == 3 + 2


def test_hosted_openai_gets_its_parameters_and_schema_spelling() -> None:
    e = engine("https://api.openai.com/v1", model="gpt-5")
    assert e.token_param == "max_completion_tokens" and e.escapes == "decoded"
    local = engine("http://127.0.0.1:11434/v1")
    assert local.token_param == "max_tokens" and local.escapes == "raw"


def test_ollama_reads_max_tokens_and_its_error_is_quoted() -> None:
    fake = FakeServer("ollama", models=["qwen2.5vl:7b"])
    with serving(fake) as urls:
        engine(urls, model="qwen2.5vl:7b").draft(inputs(1))
        fake.refuse_schema = "model requires more system memory (9.1 GiB) than is available"
        with pytest.raises(DraftError, match=r"more system memory \(9.1 GiB\)"):
            engine(urls, model="qwen2.5vl:7b").draft(inputs(1))
    assert "max_tokens" in fake.requests[0]


@pytest.mark.slow
def test_busy_answers_are_retried_after_what_the_server_asks() -> None:
    fake = FakeServer("vllm", busy=[(429, "1"), (503, None)])
    with serving(fake) as urls:
        out = engine(urls, in_flight=1).draft(inputs(1))[0]
    assert out.error is None and len(fake.requests) == 3
    first, second, third = fake.arrivals
    assert second - first >= 0.95  # Retry-After: 1
    assert third - second >= 0.95  # no header: backoff from 1 s


def test_retry_after_reads_seconds_and_dates() -> None:
    def response(value: str | None) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value} if value else {})

    assert retry_after(response("7"), 0) == 7
    assert retry_after(response("100000"), 0) == 60  # capped
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= retry_after(response(date), 0) <= 31
    assert retry_after(response(None), 0) == 1 and retry_after(response(None), 3) == 8


def test_a_server_that_stays_busy_is_set_aside_with_its_words(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import app.engines.openai_engine as oe

    monkeypatch.setattr(oe, "MAX_RETRIES", 1)
    fake = FakeServer("vllm", busy=[(503, "0"), (503, "0")])
    with serving(fake) as urls, pytest.raises(DraftError, match="stayed busy .*Server is busy"):
        engine(urls, in_flight=1).draft(inputs(1))


def test_one_slow_slot_is_learnt_and_not_flooded() -> None:
    # Ollama with one slot: the second request waits behind the first.
    fake = FakeServer("ollama", slots=1, delay_s=0.15)
    with serving(fake) as urls:
        e = engine(urls)
        outs = e.draft(inputs(8))
    assert all(o.error is None for o in outs)
    (stats,) = e.server_stats()
    assert stats["in_flight"] == 1 and not stats["learning"]
    assert len(fake.requests) == 8


def test_a_batching_server_is_sent_more_at_once() -> None:
    fake = FakeServer("vllm", delay_s=0.15)
    with serving(fake) as urls:
        e = engine(urls)
        e.draft(inputs(16))
    assert e.server_stats()[0]["in_flight"] >= 4
    assert fake.max_in_flight >= 4
    assert e.batch_size >= 8


def test_one_late_answer_does_not_settle_a_batching_server() -> None:
    # The second request (the second round's first) comes back late once, as when the
    # network or the client's own machine stalls; the server still batches.
    fake = FakeServer("vllm", delay_s=0.15, late={1: 0.35})
    with serving(fake) as urls:
        e = engine(urls)
        e.draft(inputs(24))
    assert e.server_stats()[0]["in_flight"] >= 4
    assert fake.max_in_flight >= 4


def test_the_limit_is_learnt_from_rounds_of_answers() -> None:
    def fed(server: Server, *rounds: list[float]) -> Server:
        for answers in rounds:
            for latency in answers:
                server.answered(latency)
        return server

    # A batching server: every round as fast as the first answer; doubled each round.
    assert fed(Server("u", 1, True), [1.0], [1.0] * 2, [1.1] * 4).limit == 8
    # A queueing server: slower every round at two; settled at one.
    queued = fed(Server("u", 1, True), [1.0], [1.0, 2.0], [2.0, 2.0])
    assert queued.limit == 1 and not queued.learning
    # One slow round, then a fast one: still learning, and doubled.
    late = fed(Server("u", 1, True), [1.0], [1.0, 3.0], [1.0, 1.0])
    assert late.limit == 4 and late.learning
    # Slow rounds must come in a row to settle it.
    apart = fed(Server("u", 1, True), [1.0], [3.0, 1.0], [1.0] * 2, [3.0] + [1.0] * 3)
    assert apart.limit == 4 and apart.learning
    # At the most it may be sent, a fast round keeps it there.
    top = fed(Server("u", MAX_IN_FLIGHT, True), [1.0] * MAX_IN_FLIGHT)
    assert top.limit == MAX_IN_FLIGHT and not top.learning


def test_a_fixed_number_in_flight_is_kept() -> None:
    fake = FakeServer("sglang", delay_s=0.05)
    with serving(fake) as urls:
        e = engine(urls, in_flight=3)
        e.draft(inputs(12))
    assert fake.max_in_flight <= 3 and e.server_stats()[0]["in_flight"] == 3


@pytest.mark.slow
def test_no_answer_in_time_says_so_and_what_to_change() -> None:
    fake = FakeServer("ollama", delay_s=3)
    with serving(fake) as urls, pytest.raises(DraftError) as caught:
        engine(urls, timeout_s=0.5).draft(inputs(1))
    message = caught.value.message
    assert "did not answer within 0.5 s" in message
    assert "ATELIER_DRAFT_TIMEOUT_S" in message and "ATELIER_DRAFT_IN_FLIGHT" in message


def test_two_servers_share_the_images() -> None:
    a, b = FakeServer("vllm", delay_s=0.05), FakeServer("vllm", delay_s=0.05)
    with serving(a, b) as urls:
        e = engine(",".join(urls))
        outs = e.draft(inputs(16))
    assert all(o.error is None for o in outs)
    assert len(a.requests) >= 3 and len(b.requests) >= 3
    assert len(a.requests) + len(b.requests) == 16
    stats = {s["url"]: s for s in e.server_stats()}
    assert stats[urls[0]]["done"] + stats[urls[1]]["done"] == 16
    assert all(s["images_per_s"] and s["images_per_s"] > 0 for s in stats.values())


def test_a_server_that_dies_mid_job_is_set_aside_and_the_others_finish() -> None:
    # The steady one is slow enough that the job outlasts the other's shutdown (0.1 s ticks).
    dying, steady = FakeServer("vllm", die_after=2), FakeServer("vllm", delay_s=0.05)
    with serving(dying, steady) as urls:
        e = engine(urls, in_flight=1)
        outs = e.draft(inputs(30))
    assert all(o.error is None for o in outs)
    stats = {s["url"]: s for s in e.server_stats()}
    assert 2 <= stats[urls[0]]["done"] < 15
    assert stats[urls[0]]["set_aside"] and "cannot be reached" in stats[urls[0]]["set_aside"]
    assert stats[urls[0]]["done"] + stats[urls[1]]["done"] == 30


def test_when_every_server_is_gone_the_job_says_each_why() -> None:
    urls = [f"http://127.0.0.1:{free_port()}/v1", f"http://127.0.0.1:{free_port()}/v1"]
    with pytest.raises(DraftError) as caught:
        engine(urls).draft(inputs(2))
    assert caught.value.message.startswith("No drafting server can draft")
    assert all(u in caught.value.message for u in urls)


def test_base_url_lists() -> None:
    assert split_urls("http://a:1/v1, http://b:2/v1/ http://c:3/v1") == [
        "http://a:1/v1",
        "http://b:2/v1",
        "http://c:3/v1",
    ]
    with pytest.raises(DraftError, match="not a server address"):
        split_urls("http://a:1/v1,localhost:8000")
    with pytest.raises(DraftError, match="is empty"):
        split_urls(" , ")


def test_the_settings_open_an_engine_on_every_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(
        data_dir=tmp_path,
        draft_engine="openai",
        draft_base_url="http://127.0.0.1:1/v1,http://127.0.0.1:2/v1",
        draft_in_flight=5,
        draft_token_param="max_completion_tokens",
        draft_temperature="none",
        _env_file=None,  # type: ignore[call-arg]
    )
    e = open_engine(settings)
    assert isinstance(e, OpenAIEngine)
    assert [s["url"] for s in e.server_stats()] == [
        "http://127.0.0.1:1/v1",
        "http://127.0.0.1:2/v1",
    ]
    assert all(s["in_flight"] == 5 and not s["learning"] for s in e.server_stats())
    assert e.token_param == "max_completion_tokens" and e.temperature is None
    limits = DraftLimits.scaled(max_chars=240, max_elements=10).for_convention("qwen2vl")
    assert e.max_new_tokens == token_budget(limits)
    assert e.batch_size == 20  # twice the ten requests the two servers take at once
    e.close()


def test_models_listed_from_each_server() -> None:
    a = FakeServer("vllm", models=["Qwen/Qwen2.5-VL-7B-Instruct"])
    b = FakeServer("ollama", models=["qwen2.5vl:7b", "llava:13b"])
    with serving(a, b) as urls:
        gone = f"http://127.0.0.1:{free_port()}/v1"
        found = list_models([*urls, gone])
    assert found[0] == (urls[0], ["Qwen/Qwen2.5-VL-7B-Instruct"], None)
    assert found[1] == (urls[1], ["qwen2.5vl:7b", "llava:13b"], None)
    assert found[2][0] == gone and found[2][1] == [] and "cannot be reached" in (found[2][2] or "")
