"""A fake AI-Toolkit checkout (tests/training/fake_aitk/run.py) and an exportable dataset."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests import imagefiles as f

FAKE_RUN = Path(__file__).parent / "fake_aitk" / "run.py"

CAPTION: dict[str, Any] = {
    "high_level_description": "A scholar reads by candlelight.",
    "style_description": {
        "aesthetics": "Italian Baroque, tenebrist",
        "lighting": "one candle, deep shadow",
        "medium": "painting",
        "art_style": "oil on canvas",
        "color_palette": ["#13100C", "#C8956A"],
    },
    "compositional_deconstruction": {
        "background": "a dark study",
        "elements": [
            {
                "type": "obj",
                "bbox": [100, 200, 700, 600],
                "desc": "the scholar",
                "color_palette": [],
            }
        ],
    },
}


def make_checkout(root: Path, **behaviour: Any) -> Path:
    """A folder that looks like an AI-Toolkit checkout, its run.py the stand-in trainer."""
    (root / "toolkit").mkdir(parents=True)
    (root / "toolkit" / "job.py").write_text("")
    (root / "toolkit" / "config.py").write_text("")
    shutil.copy(FAKE_RUN, root / "run.py")
    venv = root / "venv" / "bin"
    venv.mkdir(parents=True)
    # The checkout's venv Python, as AI-Toolkit's set-up makes it; here it is ours.
    (venv / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (venv / "python").chmod(0o755)
    set_behaviour(root, **behaviour)
    return root


def set_behaviour(root: Path, **behaviour: Any) -> None:
    (root / "fake.json").write_text(json.dumps({"step_s": 0.01, **behaviour}))


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return make_checkout(tmp_path / "ai-toolkit")


def make_dataset(client: TestClient, name: str = "Baroque Chiaroscuro") -> int:
    dataset_id = client.post("/api/datasets", json={"name": name, "trigger_word": "bcs"}).json()[
        "id"
    ]
    files = [("files", (f"{n}.jpg", f.jpeg_bytes(n, (640, 480)), "image/jpeg")) for n in (1, 2)]
    imported = client.post(f"/api/datasets/{dataset_id}/images", files=files).json()["imported"]
    for n, item in enumerate(imported):
        cap = json.loads(json.dumps(CAPTION))
        cap["high_level_description"] += f" ({n})"
        r = client.put(
            f"/api/images/{item['image_id']}/caption", json={"revision": 0, "caption": cap}
        )
        assert r.status_code == 200, r.text
        client.post(f"/api/images/{item['image_id']}/status", json={"status": "approved"})
    return dataset_id
