"""A live Atelier on loopback with a little data in it, shared by a test module."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from app.config import Settings
from tests.browser.conftest import serving


def png(colour: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    root = tmp_path_factory.mktemp("served")
    settings = Settings(  # type: ignore[call-arg]
        data_dir=root / "data", import_workers=1, export_roots=[root / "exports"], _env_file=None
    )
    with serving(settings) as url:
        yield url, settings


@pytest.fixture(scope="module")
def served_url(served: tuple[str, Settings]) -> str:
    return served[0]


def seed(url: str) -> dict[str, int]:
    """A new dataset with two images; its ids, named as the API's path parameters."""
    name = f"Seed {time.monotonic_ns()}"
    ds = httpx.post(f"{url}/api/datasets", json={"name": name, "trigger_word": "sd"}).json()
    shade = time.monotonic_ns() % 200
    files = [("files", (f"{n}.png", png((n * 90, shade, 200)), "image/png")) for n in (1, 2)]
    httpx.post(f"{url}/api/datasets/{ds['id']}/images", files=files, timeout=30)
    image = httpx.get(f"{url}/api/datasets/{ds['id']}/images").json()[0]["id"]
    return {"dataset_id": ds["id"], "image_id": image, "number": 1, "batch": 1, "pair_id": 1}
