"""Which checkpoint still spells right: a run written by the stand-in trainer, its samples
repainted so that the sign's text area turns red at step 30 (the loopback drafting server
then misreads it) and one step-20 sample is the safety filter's flat grey placeholder."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from fastapi.testclient import TestClient
from PIL import Image, ImageStat

from app.training.runs import list_samples
from app.training.spelling import is_blocked
from app.web.app import create_app
from tests.drafting.fake_servers import FakeServer, serving
from tests.drafting.remote_jobs import remote_settings
from tests.test_cli import atelier
from tests.training.runfolders import PROMPTS, make_run

SIGN = json.dumps(
    {
        "high_level_description": "A shop front with a sign.",
        "style_description": {"aesthetics": "[trigger], tenebrist"},
        "compositional_deconstruction": {
            "background": "a street",
            "elements": [
                {
                    "type": "text",
                    "bbox": [600, 100, 900, 900],
                    "text": "OPEN DAILY",
                    "desc": "a sign",
                }
            ],
        },
    }
)


def _read(body: dict) -> str:
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    crop = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    r, g, b = ImageStat.Stat(crop).mean
    return "OPFN DA1LY" if r > g + 60 else "OPEN DAILY"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = make_run(tmp_path, "signs", prompts=[SIGN, PROMPTS[1]])
    for sample in list_samples(run):
        path = run / "samples" / sample.name
        if sample.index > 1:
            continue  # the plain prompt's samples: no text, never read
        if (sample.step, sample.index) == (20, 1):
            Image.new("RGB", (128, 128), (128, 128, 128)).save(path, quality=95)
            continue
        img = Image.new("RGB", (128, 128), (60, 90, 120))
        paint = (200, 30, 30) if sample.step == 30 else (245, 245, 240)
        img.paste(paint, (13, 77, 115, 115))  # the sign's box, x 0.1-0.9, y 0.6-0.9
        img.save(path, quality=95)
    return run


def test_flat_grey_is_a_blocked_sample_and_a_painting_is_not() -> None:
    assert is_blocked(Image.new("RGB", (64, 64), (128, 128, 128)))
    assert not is_blocked(Image.new("RGB", (64, 64), (128, 90, 60)))  # flat, but not grey
    busy = Image.new("RGB", (64, 64), (128, 128, 128))
    busy.paste((20, 20, 20), (0, 0, 32, 64))
    assert not is_blocked(busy)


def _poll(client: TestClient, query: str) -> dict:
    for _ in range(200):
        state = client.get(f"/api/training/spelling?{query}").json()
        if not state["checking"]:
            return state
        time.sleep(0.05)
    raise AssertionError("the check never ended")


def test_text_accuracy_per_step_marks_where_it_falls(tmp_path: Path, run_dir: Path) -> None:
    server = FakeServer(reading=_read)
    with serving(server) as urls:
        settings = remote_settings(tmp_path, urls)
        app = create_app(settings)
        with TestClient(app) as client:
            query = f"run={run_dir}"
            assert client.post(f"/api/training/spelling?{query}").status_code == 202
            state = _poll(client, query)
            assert state["error"] is None
            steps = {s["step"]: s for s in state["steps"]}
            assert sorted(steps) == [0, 10, 20, 30]
            assert steps[10]["accuracy"] == pytest.approx(1.0)
            assert steps[20]["blocked"] == 1 and steps[20]["accuracy"] == pytest.approx(1.0)
            # "OPFN DA1LY" against "OPEN DAILY": two of ten characters.
            assert steps[30]["accuracy"] == pytest.approx(0.8)
            assert [s for s in steps if steps[s]["falls"]] == [30]
            read_first = len(server.requests)
            assert read_first == 7  # two text samples a step, less the blocked one
            # Read once: a second check reads nothing again.
            client.post(f"/api/training/spelling?{query}")
            assert _poll(client, query)["steps"] == state["steps"]
            assert len(server.requests) == read_first
            page = BeautifulSoup(client.get(f"/board/spelling?{query}").text, "html.parser")
            falls = page.select("tr.falls")
            assert [tr["data-step"] for tr in falls] == ["30"]
        app.state.db.dispose()


def test_a_run_without_text_prompts_says_so(tmp_path: Path, client: TestClient) -> None:
    run = make_run(tmp_path, "plain", prompts=[PROMPTS[1]])
    r = client.get(f"/api/training/spelling?run={run}")
    assert r.status_code == 422 and "nothing to spell" in r.json()["detail"]


@pytest.mark.slow
def test_spelling_from_the_command_line(tmp_path: Path, run_dir: Path) -> None:
    with serving(FakeServer(reading=_read)) as urls:
        env = {"ATELIER_DRAFT_ENGINE": "openai", "ATELIER_DRAFT_BASE_URL": urls[0]}
        env |= {"ATELIER_DRAFT_MODEL": "qwen2-vl-7b"}
        result = atelier("spelling", "--run", str(run_dir), data_dir=tmp_path / "d", env=env)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("step")]
    assert len(lines) == 4
    assert "80%" in lines[-1] and "falls here" in lines[-1]
    assert "1 blocked" in lines[2]
