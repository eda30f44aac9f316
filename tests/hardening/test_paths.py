"""Paths a user supplies: export folders, client filenames, stored names. Nothing escapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings
from app.errors import Invalid
from app.export.writer import requested_out_dir
from app.images.store import ContentStore


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", _env_file=None, **kw)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("exports/here", "relative"),
        ("./x", "relative"),
        ("", "full path"),
        ("/tmp/a/../../etc", "climbs"),
        ("/tmp/a\x00b", "full path"),
    ],
)
def test_export_folder_must_be_a_plain_full_path(tmp_path: Path, raw: str, why: str) -> None:
    with pytest.raises(Invalid) as e:
        requested_out_dir(settings(tmp_path), raw)
    assert why in e.value.message


def test_export_never_writes_into_the_data_folder(tmp_path: Path) -> None:
    s = settings(tmp_path)
    for inside in ("data", "data/store", "data/tmp/x"):
        with pytest.raises(Invalid, match="inside Atelier's data folder"):
            requested_out_dir(s, str(tmp_path / inside))
    assert requested_out_dir(s, str(tmp_path / "data/exports/a")) == tmp_path / "data/exports/a"
    # A symlink that leads into the data folder is followed before the check.
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    with pytest.raises(Invalid, match="inside Atelier's data folder"):
        requested_out_dir(s, str(tmp_path / "link" / "store"))


def test_loopback_exports_anywhere_network_only_under_the_roots(tmp_path: Path) -> None:
    assert requested_out_dir(settings(tmp_path), str(tmp_path / "mine")) == tmp_path / "mine"
    exposed = settings(tmp_path, host="0.0.0.0", token="t" * 32)
    with pytest.raises(Invalid, match="exports only under"):
        requested_out_dir(exposed, str(tmp_path / "mine"))
    assert requested_out_dir(exposed, str(tmp_path / "data/exports/x"))
    rooted = settings(tmp_path, export_roots=[tmp_path / "train"])
    assert requested_out_dir(rooted, str(tmp_path / "train/ds"))
    with pytest.raises(Invalid, match="exports only under"):
        requested_out_dir(rooted, "/etc/cron.d")


def test_export_api_refuses_a_relative_folder_and_writes_nothing(client, dataset_id: int) -> None:  # type: ignore[no-untyped-def]
    r = client.post(f"/api/datasets/{dataset_id}/export", json={"out_dir": "relative/out"})
    assert r.status_code == 422
    assert "relative" in r.json()["detail"]
    assert not Path("relative").exists()


@pytest.mark.parametrize("sha", ["../../etc/passwd", "ab/../../x", "A" * 64, "", "0" * 63])
def test_store_paths_accept_only_sha256_names(tmp_path: Path, sha: str) -> None:
    store = ContentStore(store_dir=tmp_path / "s", thumbs_dir=tmp_path / "t", tmp_dir=tmp_path)
    with pytest.raises(ValueError):
        store.blob_path(sha)
    with pytest.raises(ValueError):
        store.thumb_path(sha)
