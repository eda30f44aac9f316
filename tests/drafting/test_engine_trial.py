"""A local model folder chosen on the drafting card and tested on one image, for real: the
tiny random model loaded by the app's drafting process, its draft shown and never saved."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.web.app import create_app
from tests import imagefiles as f


@pytest.mark.slow
def test_a_local_folder_is_tested_on_one_image_then_chosen(
    draft_settings: Settings, tiny_qwen2vl: Path
) -> None:
    # The settings name another model: the folder comes from the card alone.
    settings = draft_settings.model_copy(update={"draft_model": "Qwen/absent"})
    app = create_app(settings)
    with TestClient(app) as client:
        dataset_id = client.post("/api/datasets", json={"name": "Trial"}).json()["id"]
        files = [("files", ("a.jpg", f.jpeg_bytes(1, (500, 400)), "image/jpeg"))]
        client.post(f"/api/datasets/{dataset_id}/images", files=files)
        assert client.get("/api/draft/choice").json()["ready"] is False
        r = client.post(
            f"/api/datasets/{dataset_id}/draft/test",
            json={"engine": "local", "model": str(tiny_qwen2vl)},
        )
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        deadline = time.time() + 300
        while time.time() < deadline:
            state = client.get(f"/api/draft-jobs/{job_id}/test").json()
            if state["status"] not in ("queued", "running"):
                break
            time.sleep(0.3)
        assert (state["status"], state["done"]) == ("done", 1), state
        assert isinstance(state["draft"]["high_level_description"], str)
        (image,) = client.get(f"/api/datasets/{dataset_id}/images").json()
        assert image["revision"] == 0  # a test saves nothing
        out = client.put(
            "/api/draft/choice", json={"engine": "local", "model": str(tiny_qwen2vl)}
        ).json()
        assert (out["ready"], out["from_page"]) == (True, True)
        assert "in its folder" in out["sentence"]
    app.state.db.dispose()
