"""Exports against hostile text and hostile neighbours: "${VAR}" reaches the trainer's YAML
as text in every trigger placement; a staging folder swapped for a symlink never makes the
export write outside its root; long names and a full disk get a sentence, not a 500."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.export import trainer_model as trainer
from tests.export.test_export import export, make_dataset


@pytest.mark.parametrize("placement", ["aesthetics", "prefix", "none"])
def test_dollar_braces_reach_the_trainer_as_text_in_every_placement(
    client: TestClient, tmp_path: Path, placement: str
) -> None:
    dataset_id, _ = make_dataset(client)
    style = {"aesthetics": "costs ${PRICE} and $HOME", "lighting": "${HOME}", "medium": "painting",
             "render": "oil"}  # fmt: skip
    assert client.put(f"/api/datasets/{dataset_id}/style", json=style).status_code == 200
    out = tmp_path / "out ${HOME}"  # a folder name holding it too
    report = export(client, dataset_id, out, force=True, trigger_placement=placement)
    text = report.config_path.read_text()
    assert "${" not in text
    # The trainer's reading: environment variables first (none set), then the YAML.
    config = trainer.read_config(report.config_path, env={})
    process = config["config"]["process"][0]
    assert process["datasets"][0]["folder_path"] == str(report.dataset_dir)
    assert "${HOME}" in process["datasets"][0]["folder_path"]
    prompts = [s["prompt"] for s in process["sample"]["samples"]]
    seen = [trainer.encoder_text(trainer.sample_prompt(p, "bcs style")) for p in prompts]
    styled = [s for s in seen if "costs" in s]
    assert styled and all("costs ${PRICE} and $HOME" in s for s in styled), styled[:1]
    assert json.loads(report.dataset_dir.joinpath("001.json").read_text())  # captions intact


def test_a_staging_folder_swapped_for_a_link_is_never_published(
    client: TestClient, tmp_path: Path
) -> None:
    """Another local process moves the hidden staging folder out of the export root while the
    export writes, and leaves a symlink in its place."""
    import os
    import threading
    import time

    dataset_id, _ = make_dataset(client)
    out, outside = tmp_path / "root", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    swapped: list[Path] = []
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set() and not swapped:
            for staging in out.glob(".atelier-export-*"):
                moved = outside / staging.name
                os.rename(staging, moved)
                os.symlink(moved, staging)
                swapped.append(staging)
            time.sleep(0.0005)

    watcher = threading.Thread(target=swap)
    watcher.start()
    try:
        r = client.post(f"/api/datasets/{dataset_id}/export", json={"out_dir": str(out)})
    finally:
        stop.set()
        watcher.join()
    assert swapped, "the export finished before the folder could be swapped"
    assert r.status_code == 422 and "was moved or replaced" in r.json()["detail"], r.text
    assert not (out / "datasets" / "baroque_chiaroscuro").exists()
    assert not (out / "config" / "baroque_chiaroscuro.yaml").exists()
