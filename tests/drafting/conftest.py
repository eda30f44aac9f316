"""Tiny random Qwen-VL models built offline, and settings that draft with them on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.engines.schema import DraftLimits, worst_case_chars

# Small bounds keep a random model's output (which fills every string to its limit) short;
# the byte-level tokenizer spends up to 4 tokens on a character.
MAX_CHARS, MAX_ELEMENTS = 12, 2
LIMITS = DraftLimits.scaled(max_chars=MAX_CHARS, max_elements=MAX_ELEMENTS)
TOKENS = 4 * worst_case_chars(LIMITS)


def tiny_engine(folder: Path, **given: Any) -> Any:
    """A local engine over a tiny model on the CPU, through the real loading path: two images
    a batch, small images, the small bounds above; `given` overrides any of them."""
    from app.engines.local.engine import LocalEngine

    values: dict[str, Any] = {
        "device": "cpu",
        "batch_size": 2,
        "max_pixels": 64 * 28 * 28,
        "max_new_tokens": TOKENS,
        "limits": LIMITS,
    }
    return LocalEngine.load(str(folder), **(values | given))


def sharpen(model: Any) -> None:
    """Sharp text attention, so that a row reading a wrong key (another row's, a padded one,
    a column it should not reach) shows in the logits."""
    import torch

    with torch.no_grad():
        for layer in model.model.language_model.layers:
            layer.self_attn.q_proj.weight.mul_(30)


def prefilled(engine: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
    """The engine's decoder prefills `batch` into a slot with room for 64 new tokens; the
    slot, and copies of what its first step reads besides the cache (logits, positions,
    mask, the column it writes)."""
    import torch

    decoder = engine.decoder
    rows, length = batch["input_ids"].shape
    slot = decoder._slot(rows, length + 64)
    with torch.inference_mode():
        decoder._prefill(slot, batch)
    names = ("logits", "positions", "mask", "write_at")
    return slot, {name: getattr(slot, name).clone() for name in names}


@pytest.fixture(scope="session")
def tiny_qwen2vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.random_model import save

    return save(tmp_path_factory.mktemp("models") / "tiny-qwen2-vl", family="qwen2_vl")


@pytest.fixture(scope="session")
def tiny_qwen25vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.random_model import save

    return save(tmp_path_factory.mktemp("models") / "tiny-qwen2.5-vl", family="qwen2_5_vl")


@pytest.fixture(scope="session")
def real_tiny(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A factory: a tiny random model saved around a real checkpoint's files (../shared/
    models), by folder name; the test skips where those files are not on this machine."""
    from tests.support.random_model import REAL_MODELS, real_folder, save_real

    made: dict[str, Path] = {}

    def make(name: str) -> Path:
        folder = real_folder(name)
        if folder is None:
            pytest.skip(f"the real {name} files are not here ({REAL_MODELS / name})")
        if name not in made:
            made[name] = save_real(folder, tmp_path_factory.mktemp("real") / name)
        return made[name]

    return make


def draft_env(model: Path) -> dict[str, str]:
    """ATELIER_* variables that make the real engine draft with the tiny model on the CPU."""
    return {
        "ATELIER_DRAFT_MODEL": str(model),
        "ATELIER_DRAFT_DEVICE": "cpu",
        "ATELIER_DRAFT_MAX_PIXELS": str(64 * 28 * 28),
        "ATELIER_DRAFT_MAX_CHARS": str(MAX_CHARS),
        "ATELIER_DRAFT_MAX_ELEMENTS": str(MAX_ELEMENTS),
        "ATELIER_DRAFT_MAX_NEW_TOKENS": str(TOKENS),
        "ATELIER_DRAFT_BATCH": "2",
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture
def draft_settings(tmp_path: Path, tiny_qwen2vl: Path) -> Settings:
    values: dict[str, Any] = {
        k.removeprefix("ATELIER_").lower(): v
        for k, v in draft_env(tiny_qwen2vl).items()
        if k.startswith("ATELIER_")
    }
    return Settings(data_dir=tmp_path / "data", import_workers=2, _env_file=None, **values)  # type: ignore[call-arg]


def colour_dataset(tmp_path: Path, colours: list[str], name: str) -> tuple[Any, Settings, int]:
    """A real data folder whose dataset `name` holds one 320x240 PNG of each colour (named
    0.png, 1.png... in order), imported as a user imports: its database, settings and the
    dataset's id."""
    from PIL import Image as PILImage
    from sqlmodel import Session

    from app import datasets as ds
    from app.db import make_engine, migrate
    from app.images.importer import import_sources
    from app.images.sources import walk_paths

    folder = tmp_path / "src"
    folder.mkdir(parents=True)
    for n, colour in enumerate(colours):
        PILImage.new("RGB", (320, 240), colour).save(folder / f"{n}.png")
    settings = Settings(data_dir=tmp_path / "data", import_workers=1, _env_file=None)  # type: ignore[call-arg]
    db = make_engine(settings)
    migrate(db)
    with Session(db) as session:
        dataset = ds.create_dataset(session, name=name)
        sources, _ = walk_paths([folder])
        import_sources(session, settings=settings, dataset=dataset, sources=sources)
        assert dataset.id is not None
        return db, settings, dataset.id
