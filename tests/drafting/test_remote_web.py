"""The drafting card and a job's progress name the engine and its servers: the models each
server lists to pick from, and each server's images/s."""

from __future__ import annotations

from pathlib import Path

from bs4 import BeautifulSoup
from fastapi.testclient import TestClient

from app.config import Settings
from app.web.app import create_app
from tests.browser.conftest import free_port
from tests.drafting.fake_servers import FakeServer, serving
from tests.drafting.remote_jobs import draft_dataset, remote_settings


def test_the_card_lists_each_server_s_models_and_says_which_cannot(tmp_path: Path) -> None:
    vllm = FakeServer("vllm", models=["Qwen/Qwen2.5-VL-7B-Instruct"])
    ollama = FakeServer("ollama", models=["qwen2.5vl:7b"])
    gone = f"http://127.0.0.1:{free_port()}/v1"
    with serving(vllm, ollama) as urls:
        settings = remote_settings(tmp_path, [*urls, gone])
        with TestClient(create_app(settings)) as client:
            page = client.get("/draft/engine")
            api = client.get("/api/draft/engine").json()
            dataset = client.post("/api/datasets", json={"name": "Remote"}).json()["id"]
            card = client.get(f"/datasets/{dataset}").text
    assert page.status_code == 200
    html = BeautifulSoup(page.text, "html.parser")
    line = html.select_one("#draft-engine")
    assert line is not None and line["data-engine"] == "openai"
    assert all(u in line.get_text() for u in [*urls, gone])
    assert "cannot be reached" in line.select_one("[data-server-error]").get_text()
    options = [o["value"] for o in html.select("datalist#draft-models option")]
    assert options == ["Qwen/Qwen2.5-VL-7B-Instruct", "qwen2.5vl:7b"]
    assert api["engine"] == "openai" and api["models"] == options
    assert [s["url"] for s in api["servers"]] == [*urls, gone]
    # The dataset page loads that line, and the card's server model field offers the list.
    form = BeautifulSoup(card, "html.parser")
    assert form.select_one(f'[hx-get="/draft/engine?dataset_id={dataset}"]') is not None
    assert html.select_one('input[name="server_model"]')["list"] == "draft-models"


def test_the_local_engine_says_where_it_runs(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        html = client.get("/draft/engine").text
    line = BeautifulSoup(html, "html.parser").select_one("#draft-engine")
    assert line is not None and line["data-engine"] == "local"
    assert "on this machine" in line.get_text()
    assert BeautifulSoup(html, "html.parser").select_one("datalist#draft-models") is None


def test_a_job_shows_each_server_s_progress(tmp_path: Path) -> None:
    a, b = FakeServer("vllm", delay_s=0.02), FakeServer("sglang", delay_s=0.02)
    with serving(a, b) as urls:
        job, settings = draft_dataset(tmp_path, urls, images=8)
    assert job.status.value == "done" and job.done == 8
    with TestClient(create_app(settings)) as client:
        out = client.get(f"/api/draft-jobs/{job.id}").json()
        html = client.get(f"/draft-jobs/{job.id}").text
    servers = {s["url"]: s for s in out["servers"]}
    assert set(servers) == set(urls)
    assert sum(s["done"] for s in servers.values()) == 8
    assert all(s["images_per_s"] for s in servers.values() if s["done"])
    rows = BeautifulSoup(html, "html.parser").select("table[data-servers] tr[data-server]")
    assert {r["data-server"] for r in rows} == set(urls)
    assert "on 2 servers" in html


def test_a_queued_openai_job_names_the_servers_it_will_use(tmp_path: Path) -> None:
    urls = ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"]
    settings = remote_settings(tmp_path, urls)
    with TestClient(create_app(settings)) as client:
        app = client.app
        app.state.draft_worker.wake = lambda: None  # type: ignore[attr-defined]
        dataset = client.post("/api/datasets", json={"name": "Remote"}).json()["id"]
        from tests import imagefiles as f

        files = [("files", ("a.jpg", f.jpeg_bytes(1, (400, 300)), "image/jpeg"))]
        client.post(f"/api/datasets/{dataset}/images", files=files)
        job = client.post(f"/api/datasets/{dataset}/draft", json={}).json()
    assert job["engine"] == "openai"
    assert [s["url"] for s in job["servers"]] == urls


def test_a_second_job_on_the_same_engine_counts_its_own_images(tmp_path: Path) -> None:
    """The worker keeps an engine between jobs: each job's servers show that job's images."""
    from app.db import make_engine, migrate
    from app.drafting import jobs
    from app.drafting.open_engine import open_engine
    from tests.drafting.remote_jobs import claimed_job, run

    with serving(FakeServer("vllm"), FakeServer("sglang")) as urls:
        settings = remote_settings(tmp_path, urls)
        db = make_engine(settings)
        migrate(db)
        engine = open_engine(settings)
        counts = []
        try:
            for n, name in [(5, "First"), (3, "Second")]:
                job_id = claimed_job(db, settings, tmp_path / name, images=n, name=name)
                job = run(db, settings, job_id, engine)
                assert job.done == n
                stats = jobs.read_server_stats(job)
                counts.append(sum(s["done"] for s in stats))
        finally:
            engine.close()
            db.dispose()
    assert counts == [5, 3]


def test_the_servers_progress_lives_in_the_job_s_row(tmp_path: Path) -> None:
    """Written with the heartbeat, read from the row: no file under tmp/ to find and clean."""
    from sqlmodel import Session

    from app.db import make_engine
    from app.drafting import jobs

    with serving(FakeServer("vllm"), FakeServer("sglang")) as urls:
        job, settings = draft_dataset(tmp_path, urls, images=4)
    assert job.id is not None
    db = make_engine(settings)
    try:
        with Session(db) as session:
            row = jobs.get_job(session, job.id)
            assert row.server_stats is not None
            stats = jobs.read_server_stats(row)
    finally:
        db.dispose()
    assert {s["url"] for s in stats} == set(urls) and sum(s["done"] for s in stats) == 4
    assert list(settings.tmp_dir.glob("draft-job-*")) == []
