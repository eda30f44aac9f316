"""The drafting card chooses the engine: whether the chosen model is on this machine, the
models found, a choice for the whole app without a restart, a test on one image, the 2B model
proposed where the default cannot run, Qwen3-VL recommended, and the re-draft's check."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup
from fastapi.testclient import TestClient

from app.config import Settings
from app.web.app import create_app
from tests import imagefiles as f
from tests.browser.conftest import free_port
from tests.drafting.fake_servers import FakeServer, serving


def fake_hf_cache(root: Path, models: dict[str, str], size: int = 4096) -> Path:
    """A Hugging Face cache holding `models` (repo id -> config.json's model_type)."""
    for repo, model_type in models.items():
        folder = root / ("models--" + repo.replace("/", "--"))
        snap = folder / "snapshots" / "abc123"
        snap.mkdir(parents=True)
        (folder / "refs").mkdir()
        (folder / "refs" / "main").write_text("abc123")
        (snap / "config.json").write_text(json.dumps({"model_type": model_type}))
        (snap / "model.safetensors").write_bytes(b"\0" * size)
    return root


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, where the card looks (this machine's own stays out)."""
    from huggingface_hub import constants

    root = tmp_path / "hub"
    root.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    return root


@contextmanager
def app_client(tmp_path: Path, **kw: Any) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", import_workers=1, _env_file=None, **kw)  # type: ignore[call-arg]
    app = create_app(settings)
    with TestClient(app) as client:
        yield client
    app.state.db.dispose()


def soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def new_dataset(client: TestClient, name: str = "Chiaroscuro", images: int = 1) -> int:
    dataset_id = client.post("/api/datasets", json={"name": name}).json()["id"]
    if images:
        files = [
            ("files", (f"{i}.jpg", f.jpeg_bytes(i, (640, 480)), "image/jpeg"))
            for i in range(images)
        ]
        client.post(f"/api/datasets/{dataset_id}/images", files=files)
    return dataset_id


def test_the_card_says_the_default_is_not_here_and_lists_the_models_found(
    tmp_path: Path, hub: Path
) -> None:
    fake_hf_cache(hub, {"Qwen/Qwen2-VL-2B-Instruct": "qwen2_vl", "org/other": "llama"})
    with app_client(tmp_path, draft_device="cpu") as client:
        dataset_id = new_dataset(client, images=0)
        card = soup(client.get(f"/draft/engine?dataset_id={dataset_id}").text)
        api = client.get("/api/draft/choice").json()
    root = card.select_one("#draft-engine")
    assert root is not None and root["data-ready"] == "no"
    readiness = card.select_one("[data-readiness]").get_text()
    assert "Qwen/Qwen2-VL-7B-Instruct is not on this machine" in readiness
    assert "hf download Qwen/Qwen2-VL-7B-Instruct" in readiness
    rows = {r["data-model"]: r.get_text(" ", strip=True) for r in card.select("tr[data-model]")}
    assert set(rows) == {"Qwen/Qwen2-VL-2B-Instruct", "org/other"}
    assert "Qwen2-VL" in rows["Qwen/Qwen2-VL-2B-Instruct"]
    assert card.select_one("details[data-choice]").has_attr("open")  # not ready: open
    # No GPU (here: the CPU asked for): the 2B model is proposed, and it is on disk.
    propose = card.select_one("[data-propose-small]")
    assert propose is not None and "Without a GPU" in propose.get_text()
    assert propose.select_one('input[name="model_disk"]')["value"] == "Qwen/Qwen2-VL-2B-Instruct"
    assert "hf download" not in propose.get_text()
    # Without an image there is nothing to test on.
    assert card.select_one("[data-test-engine]").has_attr("disabled")
    assert (api["engine"], api["from_page"], api["ready"]) == ("local", False, False)


def test_a_gpu_too_small_for_the_default_gets_the_2b_proposed(
    tmp_path: Path, hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.web.drafting as web_drafting

    monkeypatch.setattr(web_drafting, "local_gpu_gb", lambda: 8.0)
    with app_client(tmp_path, draft_device="cuda") as client:
        card = soup(client.get("/draft/engine").text)
    propose = card.select_one("[data-propose-small]")
    assert propose is not None and "more memory than this GPU's 8 GiB" in propose.get_text()
    assert "hf download Qwen/Qwen2-VL-2B-Instruct" in propose.get_text()  # not on disk
    monkeypatch.setattr(web_drafting, "local_gpu_gb", lambda: 80.0)
    with app_client(tmp_path, draft_device="cuda") as client:
        assert soup(client.get("/draft/engine").text).select_one("[data-propose-small]") is None


def test_choosing_a_model_holds_for_every_dataset_at_once_and_qwen3_is_recommended(
    tmp_path: Path, hub: Path
) -> None:
    fake_hf_cache(
        hub,
        {
            "Qwen/Qwen2-VL-2B-Instruct": "qwen2_vl",
            "Qwen/Qwen3-VL-4B-Instruct": "qwen3_vl",
        },
    )
    fake_hf_cache(hub, {"Qwen/Qwen3-VL-8B-Instruct": "qwen3_vl"}, size=8192)
    with app_client(tmp_path, draft_device="cpu") as client:
        first, second = new_dataset(client, "One"), new_dataset(client, "Two")
        card = soup(client.get(f"/draft/engine?dataset_id={first}").text)
        recommend = card.select_one("[data-recommend]")
        assert recommend is not None  # the larger Qwen3-VL on disk
        assert recommend.select_one('input[name="model_disk"]')["value"] == (
            "Qwen/Qwen3-VL-8B-Instruct"
        )
        hx = {"HX-Request": "true"}
        form = {"source": "disk", "model_disk": "Qwen/Qwen3-VL-8B-Instruct", "action": "use"}
        chosen = soup(
            client.post("/draft/engine", data=form | {"dataset_id": first}, headers=hx).text
        )
        assert chosen.select_one("#draft-engine")["data-ready"] == "yes"
        assert "in the Hugging Face cache" in chosen.select_one("[data-readiness]").get_text()
        assert "for every dataset" in chosen.select_one("[data-choice-notice]").get_text()
        assert chosen.select_one("[data-recommend]") is None  # it is the one in use
        # The other dataset's card and its jobs use it, with no restart.
        other = soup(client.get(f"/draft/engine?dataset_id={second}").text)
        assert other.select_one("[data-chosen-model]").get_text() == "Qwen/Qwen3-VL-8B-Instruct"
        job = client.post(f"/api/datasets/{second}/draft", json={}).json()
        client.post(f"/api/draft-jobs/{job['id']}/cancel")
        assert (job["engine"], job["model"]) == ("local", "Qwen/Qwen3-VL-8B-Instruct")
        # Back to the settings.
        client.post("/draft/engine", data={"source": "settings"}, headers=hx)
        assert client.get("/api/draft/choice").json()["model"] == "Qwen/Qwen2-VL-7B-Instruct"


def test_a_choice_that_cannot_work_is_refused_with_a_sentence_and_the_typing_kept(
    tmp_path: Path, hub: Path
) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    hx = {"HX-Request": "true"}
    with app_client(tmp_path) as client:
        r = client.post(
            "/draft/engine", data={"source": "folder", "folder": str(empty)}, headers=hx
        )
        assert r.status_code == 422
        card = soup(r.text)
        assert "holds no config.json" in card.select_one("[data-choice-error]").get_text()
        assert card.select_one('input[name="folder"]')["value"] == str(empty)
        assert card.select_one('input[name="source"][value="folder"]').has_attr("checked")
        bad = client.put(
            "/api/draft/choice",
            json={"engine": "openai", "model": "m", "base_url": "ftp://x"},
        )
        assert bad.status_code == 422 and "not a server address" in bad.json()["detail"]
        assert client.get("/api/draft/choice").json()["from_page"] is False


def test_a_server_is_chosen_tested_on_one_image_and_the_re_draft_checks_it_first(
    tmp_path: Path, hub: Path
) -> None:
    fake = FakeServer("ollama", models=["qwen2-vl-7b"])
    with serving(fake) as (url,), app_client(tmp_path) as client:
        dataset_id = new_dataset(client, images=2)
        hx = {"HX-Request": "true"}
        # Typed as people type it: no scheme, no /v1.
        address = url.removeprefix("http://").removesuffix("/v1")
        form = {
            "source": "server",
            "base_url": address,
            "server_model": "qwen2-vl-7b",
            "action": "test",
            "dataset_id": str(dataset_id),
        }
        card = soup(client.post("/draft/engine", data=form, headers=hx).text)
        trial = card.select_one("#draft-trial")
        assert trial is not None
        job_id = int(trial["hx-get"].split("/")[2])
        deadline = time.time() + 120
        while time.time() < deadline:
            state = client.get(f"/api/draft-jobs/{job_id}/test").json()
            if state["status"] not in ("queued", "running"):
                break
            time.sleep(0.2)
        assert state["status"] == "done", state
        assert state["draft"]["high_level_description"] == "a man at a table"
        shown = soup(client.get(f"/draft-jobs/{job_id}/test").text)
        assert "a man at a table" in shown.select_one("[data-trial-draft]").get_text()
        assert shown.select_one("[data-use-tested]") is not None  # not chosen yet
        # Nothing was saved, and the dataset's jobs do not list the test.
        images = client.get(f"/api/datasets/{dataset_id}/images").json()
        assert [i["revision"] for i in images] == [0, 0]
        assert client.get(f"/api/datasets/{dataset_id}/draft-jobs").json() == []
        # Used: the app drafts on that server from now on.
        use = {"source": "server", "base_url": url, "server_model": "qwen2-vl-7b"}
        client.post("/draft/engine", data=use | {"action": "use"}, headers=hx)
        api = client.get("/api/draft/choice").json()
        assert (api["engine"], api["base_url"], api["ready"]) == ("openai", url, True)
        image_id = images[0]["id"]
        check = soup(client.get(f"/images/{image_id}/draft/check").text)
        assert check.select_one("[data-redraft-check]")["data-redraft-check"] == "ready"
        fake._stop()  # type: ignore[misc]
        time.sleep(0.5)
    with app_client(tmp_path) as client:
        # The server gone: the re-draft says so before asking anything, and starts nothing.
        check = soup(client.get(f"/images/{image_id}/draft/check").text)
        assert check.select_one("[data-redraft-check]")["data-redraft-check"] == "not-ready"
        assert check.select_one("[data-redraft-confirm]") is None
        assert "cannot be reached" in check.select_one("[data-engine-not-ready]").get_text()
        assert client.get(f"/api/datasets/{dataset_id}/draft-jobs").json() == []


def test_a_local_model_that_is_not_here_stops_the_re_draft_before_the_question(
    tmp_path: Path, hub: Path
) -> None:
    with app_client(tmp_path) as client:
        dataset_id = new_dataset(client)
        (image,) = client.get(f"/api/datasets/{dataset_id}/images").json()
        check = soup(client.get(f"/images/{image['id']}/draft/check").text)
    assert check.select_one("[data-redraft-check]")["data-redraft-check"] == "not-ready"
    assert "is not on this machine" in check.select_one("[data-engine-not-ready]").get_text()


def test_an_unreachable_port_is_not_ready(tmp_path: Path, hub: Path) -> None:
    with app_client(tmp_path) as client:
        url = f"http://127.0.0.1:{free_port()}/v1"
        out = client.put(
            "/api/draft/choice", json={"engine": "openai", "model": "m", "base_url": url}
        ).json()
    assert out["ready"] is False and "cannot be reached" in out["sentence"]


# Beside the checkout (tests/support/random_model.py's place), or beside the folder of
# worktrees that holds this one; absent on a fresh clone, where these tests skip.
_ROOT = Path(__file__).resolve().parents[2]
REAL_MODELS = next(
    (
        p
        for p in (_ROOT.parent / "shared" / "models", _ROOT.parent.parent / "shared" / "models")
        if p.is_dir()
    ),
    _ROOT.parent / "shared" / "models",
)


@pytest.mark.parametrize(
    ("name", "family", "convention"),
    [
        ("Qwen3-VL-8B-Instruct", "qwen3_vl", "qwen3vl"),
        ("Qwen3-VL-4B-Instruct", "qwen3_vl", "qwen3vl"),
        ("Qwen2.5-VL-7B-Instruct", "qwen2_5_vl", "qwen25vl"),
    ],
)
def test_the_real_checkpoints_are_known_by_their_family_and_box_convention(
    name: str, family: str, convention: str
) -> None:
    from app.drafting import available
    from app.engines.local.engine import CONVENTIONS

    folder = REAL_MODELS / name
    if not (folder / "config.json").is_file():
        pytest.skip(f"the real {name} files are not here (../shared/models)")
    assert available.family_of(folder) == family
    # The card and the engine read a model's box convention alike.
    assert available.convention_of(family) == CONVENTIONS[family] == convention
    # A server serving it under the names servers use gets the same convention.
    assert available.guess_convention(f"Qwen/{name}") == convention


def test_a_real_qwen3_vl_folder_is_recommended_and_can_be_chosen(tmp_path: Path, hub: Path) -> None:
    import shutil

    real = REAL_MODELS / "Qwen3-VL-4B-Instruct"
    if not (real / "config.json").is_file():
        pytest.skip("the real Qwen3-VL-4B files are not here (../shared/models)")
    folder = tmp_path / "Qwen3-VL-4B-Instruct"
    shutil.copytree(real, folder)
    (folder / "model.safetensors").write_bytes(b"\0" * 4096)  # its size is all the card reads
    hx = {"HX-Request": "true"}
    with app_client(tmp_path) as client:
        form = {"source": "folder", "folder": str(folder), "action": "use"}
        card = soup(client.post("/draft/engine", data=form, headers=hx).text)
    row = card.select_one(f'tr[data-model="{folder}"]')
    assert row is not None and "Qwen3-VL" in row.get_text()
    assert card.select_one("#draft-engine")["data-ready"] == "yes"
    assert "in its folder" in card.select_one("[data-readiness]").get_text()


def test_the_cli_drafts_with_the_engine_chosen_on_the_card(tmp_path: Path, hub: Path) -> None:
    import os
    import subprocess
    import sys

    fake = FakeServer("lmstudio", models=["qwen2-vl-7b"])
    with serving(fake) as (url,):
        with app_client(tmp_path) as client:
            new_dataset(client, "Cli", images=2)
            client.put(
                "/api/draft/choice",
                json={"engine": "openai", "model": "qwen2-vl-7b", "base_url": url},
            )
        env = {**os.environ, "ATELIER_DATA_DIR": str(tmp_path / "data")}
        env.pop("ATELIER_DRAFT_ENGINE", None)
        r = subprocess.run(
            [sys.executable, "-m", "app", "draft", "--dataset", "Cli"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    assert r.returncode == 0, r.stderr
    assert "with openai qwen2-vl-7b" in r.stderr
    assert "2 drafted" in r.stdout
    assert len(fake.requests) == 2


def test_with_a_token_the_page_names_no_server_nor_folder(tmp_path: Path, hub: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with app_client(tmp_path, token="s3cret") as client:
        client.headers["Authorization"] = "Bearer s3cret"
        other = client.put(
            "/api/draft/choice",
            json={"engine": "openai", "model": "m", "base_url": "http://10.0.0.7:8000/v1"},
        )
        assert other.status_code == 422 and "ATELIER_DRAFT_BASE_URL" in other.json()["detail"]
        local = client.put("/api/draft/choice", json={"engine": "local", "model": str(folder)})
        assert local.status_code == 422 and "ATELIER_DRAFT_MODEL" in local.json()["detail"]
        # The configured server's models can still be chosen, and any model in the cache.
        same = client.put("/api/draft/choice", json={"engine": "openai", "model": "m"})
        assert same.status_code == 200 and same.json()["base_url"] == "http://127.0.0.1:8001/v1"
        assert client.get("/api/draft/choice").json()["from_page"] is True
