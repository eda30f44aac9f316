"""A draft's doubts, end to end: a loopback OpenAI-compatible server answers chosen token log
probabilities and chosen second readings; the draft's confidences and flagged mismatches are
exactly what the server said, survive a reload, order the grid and j/k, reach lint, and never
reach an exported caption file."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup
from fastapi.testclient import TestClient
from PIL import Image
from sqlmodel import Session

from app import datasets as ds
from app.db import make_engine, migrate
from app.drafting.open_engine import open_engine
from app.engines.confidence import field_confidences
from app.web.app import create_app
from tests.drafting.fake_servers import FakeServer, serving
from tests.drafting.remote_jobs import claimed_job, draft_dataset, remote_settings, run
from tests.test_cli import assert_user_error, atelier

DRAFT = {
    "high_level_description": "A man by a sign",
    "style_description": {
        "aesthetics": "baroque",
        "lighting": "candle",
        "medium": "painting",
        "technique": "oil",
    },
    "compositional_deconstruction": {
        "background": "dark room",
        "elements": [
            {"type": "obj", "bbox_2d": [0, 0, 400, 500], "desc": "a man"},
            {
                "type": "text",
                "bbox_2d": [500, 500, 1000, 1000],
                "text": "EXIT NOW",
                "desc": "a sign",
            },
        ],
    },
}
# The probability the server gives the lighting value's token, by image width (the prompt
# says it); every other token gets 0.99.
LIGHTING = {480: 0.2, 520: 0.99, 560: 0.5}


def _tokens(content: str) -> list[str]:
    """The answer cut as a tokenizer might: each JSON string whole, and what lies between."""
    return re.findall(r'"(?:[^"\\]|\\.)*"|[^"]+', content)


def _logprobs(body: dict, content: str) -> list[dict]:
    width = int(re.search(r"The image is (\d+)x", json.dumps(body)).group(1))  # type: ignore[union-attr]
    out = []
    for token in _tokens(content):
        p = LIGHTING[width] if token == '"candle"' else 0.99
        out.append({"token": token, "logprob": math.log(p), "bytes": list(token.encode())})
    return out


def _reading(body: dict) -> str:
    """The first image's sign is misread on purpose; the others are read exactly."""
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    crop = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    # The text box is the right half of the image, with a 15 % margin: 276 px wide for the
    # 480 px image, 299 for 520, 323 for 560.
    return "EX1T N0W" if crop.width < 290 else "EXIT NOW"


def test_confidence_counts_value_tokens_only() -> None:
    text = '{"high_level_description":"A cat","style_description":{"lighting":"dim"}}'
    pieces = ['{"', "high_level_description", '":"', "A", " cat", '","', "style_description"]
    pieces += ['":{"', "lighting", '":"', "dim", '"}}']
    probs = {"A": 0.5, " cat": 0.25, "dim": 0.8}
    tokens = [(p.encode(), math.log(probs.get(p, 0.01))) for p in pieces]
    got = field_confidences(text, tokens)
    assert set(got) == {"high_level_description", "style.lighting"}
    assert got["high_level_description"].least == pytest.approx(0.25)
    assert got["high_level_description"].mean == pytest.approx(0.375)
    assert got["style.lighting"].least == pytest.approx(0.8)
    # Tokens that do not spell the text give no confidences rather than wrong ones.
    assert field_confidences(text, tokens[:-1]) == {}


def test_confidence_pools_every_token_overlapping_a_value_however_the_text_is_cut() -> None:
    """Random cuts of a draft with multi-byte characters (a token may end inside one): each
    field and element pools exactly the tokens whose characters overlap its values, every
    token compared with every value here."""
    import random

    from app.engines.confidence import _caption_path, _Scanner

    caption = DRAFT | {"high_level_description": "Ein Mann, ein Schild: «Ausgang» ✓"}
    text = json.dumps(caption, ensure_ascii=False)
    raw = text.encode()
    assert len(raw) > len(text)  # some characters take several bytes
    spans = _Scanner(text).scan()
    rng = random.Random(7)
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(raw)), len(raw) // 3))
        pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
        probs = [rng.uniform(0.05, 1.0) for _ in pieces]
        got = field_confidences(
            text, [(p, math.log(q)) for p, q in zip(pieces, probs, strict=True)]
        )
        # Each token's characters: those whose first byte it holds, or the one it ends in.
        chars, at = [], 0
        for piece in pieces:
            first = sum(1 for b in raw[:at] if b & 0xC0 != 0x80)
            at += len(piece)
            last = sum(1 for b in raw[:at] if b & 0xC0 != 0x80)
            chars.append((first, max(last, first + 1)))
        want: dict[str, list[float]] = {}
        for path, begin, end in spans:
            name = _caption_path(path)
            if name is None:
                continue
            end = max(end, begin + 1)
            hit = [q for (a, b), q in zip(chars, probs, strict=True) if a < end and b > begin]
            want.setdefault(name, []).extend(hit)
            if name.startswith("elements."):
                want.setdefault(name.rsplit(".", 1)[0], []).extend(hit)
        assert set(got) == {k for k, v in want.items() if v}
        for name, c in got.items():
            assert c.tokens == len(want[name]), name
            assert c.least == pytest.approx(min(want[name]))
            assert c.mean == pytest.approx(sum(want[name]) / len(want[name]))


@pytest.fixture(scope="module")
def drafted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, FakeServer]:
    tmp = tmp_path_factory.mktemp("doubts")
    server = FakeServer(
        content=lambda body: json.dumps(DRAFT), logprobs=_logprobs, reading=_reading
    )
    with serving(server) as urls:
        # Built before the per-test environment: the TestClient's host named here.
        settings = remote_settings(tmp, urls, allowed_hosts=["testserver"])
        job, settings = draft_dataset(tmp, urls, images=3, settings=settings)
    assert job.done == 3, job
    return settings, server


def _client(settings: Any) -> TestClient:
    return TestClient(create_app(settings))


def _ids(client: TestClient) -> tuple[int, list[int]]:
    (dataset,) = client.get("/api/datasets").json()
    images = client.get(f"/api/datasets/{dataset['id']}/images").json()
    return dataset["id"], [i["id"] for i in images]


def test_field_confidence_is_what_the_server_said(drafted: tuple[Any, FakeServer]) -> None:
    settings, server = drafted
    asked = [r for r in server.requests if r["response_format"]["json_schema"]["name"] == "caption"]
    assert asked and all(r.get("logprobs") is True for r in asked)
    with _client(settings) as client:
        _, (first, second, third) = _ids(client)
        d = client.get(f"/api/images/{first}/caption/doubts").json()
        assert d["confidence"]["style.lighting"]["least"] == pytest.approx(0.2)
        assert d["confidence"]["style.lighting"]["tokens"] == 1
        assert d["confidence"]["style.aesthetics"]["least"] == pytest.approx(0.99)
        assert d["least"] == pytest.approx(0.2)
        assert [s["where"] for s in d["shown"]] == ["style · lighting"]
        sure = client.get(f"/api/images/{second}/caption/doubts").json()
        assert sure["least"] == pytest.approx(0.99) and sure["shown"] == []
        # The element's confidence is keyed by its id, which its edits keep.
        element_keys = [k for k in d["confidence"] if k.startswith("element:")]
        assert len([k for k in element_keys if "." not in k]) == 2


def test_second_reading_flags_a_planted_mismatch_and_passes_an_exact_match(
    drafted: tuple[Any, FakeServer],
) -> None:
    settings, server = drafted
    readings = [
        r for r in server.requests if r["response_format"]["json_schema"]["name"] == "reading"
    ]
    assert len(readings) == 3  # one per text element
    with _client(settings) as client:
        dataset_id, (first, second, _) = _ids(client)
        bad = client.get(f"/api/images/{first}/caption/doubts").json()
        assert bad["readings_that_differ"] == [
            {"element": 2, "drafted": "EXIT NOW", "read": "EX1T N0W", "cer": pytest.approx(2 / 8)}
        ]
        good = client.get(f"/api/images/{second}/caption/doubts").json()
        assert good["readings_that_differ"] == []
        lint = client.get(f"/api/datasets/{dataset_id}/lint").json()
        flagged = [f for f in lint if f["code"] == "second_reading"]
        assert [f["image_id"] for f in flagged] == [first]
        page = BeautifulSoup(client.get(f"/images/{first}").text, "html.parser")
        reading = page.select_one("[data-reading='2']")
        assert reading is not None and "EX1T N0W" in reading.get_text()
        assert page.select_one("[data-doubt='style.lighting']") is not None


def test_a_fixed_transcription_is_no_longer_flagged(drafted: tuple[Any, FakeServer]) -> None:
    settings, _ = drafted
    with _client(settings) as client:
        _, (_, _, third) = _ids(client)
        view = client.get(f"/api/images/{third}/caption").json()
        caption = view["caption"]
        caption["style_description"]["lighting"] = "candlelight from the left"
        r = client.put(
            f"/api/images/{third}/caption", json={"revision": view["revision"], "caption": caption}
        )
        assert r.status_code == 200, r.text
        d = client.get(f"/api/images/{third}/caption/doubts").json()
        assert d["confidence"]["style.lighting"]["least"] == pytest.approx(0.5)  # kept
        assert d["shown"] == []  # a person rewrote it: no longer marked


def test_least_sure_first_orders_the_grid_and_j_k(drafted: tuple[Any, FakeServer]) -> None:
    settings, _ = drafted
    with _client(settings) as client:
        dataset_id, (first, second, third) = _ids(client)
        grid = BeautifulSoup(
            client.get(f"/datasets/{dataset_id}?sort=least_sure").text, "html.parser"
        )
        order = [int(li["data-image-id"]) for li in grid.select("li.tile")]
        assert order == [first, third, second]  # 0.2, 0.5, 0.99
        link = grid.select_one(f"li[data-image-id='{third}'] a.thumb")["href"]
        assert link == f"/images/{third}?sort=least_sure"
        editor = BeautifulSoup(client.get(link).text, "html.parser")
        hrefs = {a["href"] for a in editor.select("a[href^='/images/']")}
        assert f"/images/{first}?sort=least_sure" in hrefs  # previous
        assert f"/images/{second}?sort=least_sure" in hrefs  # next


def test_doubts_survive_a_reload_and_never_reach_the_export(
    drafted: tuple[Any, FakeServer], tmp_path: Path
) -> None:
    settings, _ = drafted
    with _client(settings) as client:
        _, (first, _, _) = _ids(client)
        before = client.get(f"/api/images/{first}/caption/doubts").json()
    with _client(settings) as client:  # a new app on the same data dir
        dataset_id, _ = _ids(client)
        assert client.get(f"/api/images/{first}/caption/doubts").json() == before
        r = client.post(
            f"/api/datasets/{dataset_id}/export",
            json={"out_dir": str(tmp_path / "aitk"), "force": True},
        )
        assert r.status_code == 200, r.text
    files = sorted((tmp_path / "aitk" / "datasets").rglob("0*.json"))
    assert len(files) == 3
    for f in files:
        text = f.read_text()
        assert "least" not in text and "EX1T" not in text and "confidence" not in text
        assert set(json.loads(text)) <= {
            "high_level_description",
            "style_description",
            "compositional_deconstruction",
        }


def test_second_reading_can_be_turned_off(tmp_path: Path) -> None:
    server = FakeServer(content=lambda body: json.dumps(DRAFT), reading=_reading)
    with serving(server) as urls:
        settings = remote_settings(tmp_path, urls)
        db = make_engine(settings)
        migrate(db)
        job_id = claimed_job(db, settings, tmp_path / "src", images=2, name="Off")
        with Session(db) as session:
            ds.update_dataset(session, ds.find_dataset(session, "Off"), second_reading=False)
        engine = open_engine(settings)
        try:
            job = run(db, settings, job_id, engine)
        finally:
            engine.close()
            db.dispose()
    assert job.done == 2
    names = [r["response_format"]["json_schema"]["name"] for r in server.requests]
    assert "reading" not in names and names.count("caption") == 2


def test_the_setting_is_in_the_api(client: TestClient, dataset_id: int) -> None:
    assert client.get(f"/api/datasets/{dataset_id}").json()["second_reading"] is True
    r = client.patch(f"/api/datasets/{dataset_id}", json={"second_reading": False})
    assert r.status_code == 200 and r.json()["second_reading"] is False


def test_a_dataset_s_drafts_to_check_first_from_the_api_and_the_cli(
    drafted: tuple[Any, FakeServer],
) -> None:
    """Only the drafts with a part still to check are listed, least sure first, with what to
    check: the API and `atelier doubts` give the same."""
    settings, _ = drafted
    with _client(settings) as client:
        dataset_id, (first, _, _) = _ids(client)
        listed = client.get(f"/api/datasets/{dataset_id}/doubts").json()
        one = client.get(f"/api/images/{first}/caption/doubts").json()
        assert client.get("/api/datasets/999999/doubts").status_code == 404
    # The second image's draft was sure and read right; the third's lighting (0.5) is not
    # under the mark: neither is listed.
    assert [i["id"] for i in listed] == [first]
    assert {k: v for k, v in listed[0].items() if k in one} == one
    assert [s["where"] for s in listed[0]["shown"]] == ["style · lighting"]
    cli = atelier("doubts", "--dataset", "Remote", "--json", data_dir=settings.data_dir)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == listed
    text = atelier("doubts", "--dataset", "Remote", data_dir=settings.data_dir)
    assert text.returncode == 0, text.stderr
    assert "style · lighting" in text.stdout and "least 0.20" in text.stdout
    assert '"EXIT NOW", read again "EX1T N0W"' in text.stdout
    assert listed[0]["filename"] in text.stdout
    missing = atelier("doubts", "--dataset", "Nope", data_dir=settings.data_dir)
    assert_user_error(missing, "Nope")
