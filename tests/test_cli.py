"""The `atelier` command, run as a user runs it: a real process, real files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import imagefiles as f


def atelier(
    *args: str, data_dir: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ATELIER_DATA_DIR": str(data_dir), **(env or {})},
    )


def assert_user_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.slow
def test_import_folder_and_list_datasets(tmp_path: Path) -> None:
    folder = tmp_path / "aitk"
    for i in range(3):
        f.png(folder / f"{i:03d}.png", i)
    (folder / "000.json").write_text("{}")
    (folder / "broken.png").write_text("<html></html>")
    data = tmp_path / "data"
    r = atelier("import", str(folder), "--dataset", "Old Masters", "--create", data_dir=data)
    assert r.returncode == 0, r.stderr
    assert "refused    broken.png: it is an HTML page, not an image" in r.stdout
    assert "3 imported (1 with a caption file), 0 duplicate, 1 refused" in r.stdout
    again = atelier("import", str(folder / "001.png"), "--dataset", "old_masters", data_dir=data)
    assert "duplicate  001.png" in again.stdout
    listing = atelier("datasets", data_dir=data)
    assert listing.returncode == 0
    assert listing.stdout.splitlines()[1].split()[:3] == ["Old", "Masters", "3"]


def test_import_data_dir_option(tmp_path: Path) -> None:
    f.jpeg(tmp_path / "a.jpg", 1)
    other = tmp_path / "elsewhere"
    r = atelier(
        "import",
        str(tmp_path / "a.jpg"),
        "--dataset",
        "x",
        "--create",
        "--data-dir",
        str(other),
        data_dir=tmp_path / "unused",
    )
    assert r.returncode == 0 and (other / "atelier.db").exists()
    assert not (tmp_path / "unused").exists()


def test_import_unknown_dataset_exits_2(tmp_path: Path) -> None:
    f.jpeg(tmp_path / "a.jpg", 1)
    r = atelier("import", str(tmp_path / "a.jpg"), "--dataset", "nope", data_dir=tmp_path / "d")
    assert_user_error(r, "no dataset is named 'nope'; add --create to make it")


def test_import_missing_path_exits_2(tmp_path: Path) -> None:
    r = atelier(
        "import", str(tmp_path / "missing"), "--dataset", "x", "--create", data_dir=tmp_path / "d"
    )
    assert_user_error(r, "does not exist")


def test_import_empty_folder_exits_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    r = atelier(
        "import", str(tmp_path / "empty"), "--dataset", "x", "--create", data_dir=tmp_path / "d"
    )
    assert_user_error(r, "no image files found")


def test_data_dir_that_is_a_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert_user_error(atelier("datasets", data_dir=tmp_path / "file"), "is a file, not a folder")


def test_serve_network_bind_needs_token(tmp_path: Path) -> None:
    r = atelier("serve", "--host", "0.0.0.0", data_dir=tmp_path / "d")
    assert_user_error(r, "give it a token with ATELIER_TOKEN or --token-file")
    short = atelier("serve", "--host", "0.0.0.0", "--token", "abc", data_dir=tmp_path / "d")
    assert_user_error(short, "at least 16 characters")


def test_bad_setting_exits_2(tmp_path: Path) -> None:
    r = atelier("datasets", data_dir=tmp_path / "d", env={"ATELIER_MAX_FILE_MB": "lots"})
    assert_user_error(r, "invalid setting max_file_mb")


def test_console_script_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "atelier"
    r = subprocess.run(
        [str(script), "datasets", "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and r.stdout.strip() == "No datasets yet."


def test_datasets_lists_captions_a_person_edited(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.web.app import create_app

    data = tmp_path / "data"
    with TestClient(create_app(Settings(data_dir=data))) as client:
        ds = client.post("/api/datasets", json={"name": "Baroque"}).json()["id"]
        files = [("files", (f"{i}.jpg", f.jpeg_bytes(i), "image/jpeg")) for i in range(2)]
        iid = client.post(f"/api/datasets/{ds}/images", files=files).json()["imported"][0]
        caption = {
            "high_level_description": "A scholar.",
            "style_description": {"aesthetics": "tenebrist"},
            "compositional_deconstruction": {"background": "a study", "elements": []},
        }
        body = {"revision": 0, "caption": caption}
        assert client.put(f"/api/images/{iid['image_id']}/caption", json=body).status_code == 200
    listing = atelier("datasets", data_dir=data).stdout.splitlines()
    header, row = listing[0].split(), listing[1].split()
    assert header[:6] == ["NAME", "IMAGES", "APPROVED", "REVIEW", "EDITED", "DRAFT"]
    assert row[:6] == ["Baroque", "2", "0", "0", "1", "0"]


def test_the_option_choices_are_the_domain_s_own() -> None:
    import ast
    from typing import get_args

    from app import cli
    from app.captions.dialects import BoxFormat
    from app.engines.interface import ENGINE_NAMES
    from app.export.caption_file import Dialect, TriggerPlacement
    from app.export.profiles import PROFILES

    for option, values in [
        (cli.EngineOption, ENGINE_NAMES),
        (cli.ProfileOption, PROFILES),
        (cli.DialectOption, get_args(Dialect)),
        (cli.PlacementOption, get_args(TriggerPlacement)),
        (cli.BoxFormatOption, get_args(BoxFormat)),
    ]:
        assert [o.value for o in option] == list(values)
    # Made of them, not a copy that agrees today: no choice class spells its values out.
    tree = ast.parse(Path(cli.__file__).read_text())
    copies = [
        n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name.endswith("Option")
    ]
    assert copies == []
