"""The sample set is saved with the dataset, and every way of writing the YAML uses it: the
export page, the Train form, the export and train API, the CLI (issue 28 item 5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup
from fastapi.testclient import TestClient
from ruamel.yaml import YAML

from app.config import Settings
from app.models import TrainStatus
from tests.export import trainer_model as trainer
from tests.training.conftest import make_dataset
from tests.training.test_cli_and_restart import atelier
from tests.training.test_jobs import wait_for

PEARL = "A close-up portrait of a girl with a pearl."


def yaml_samples(path: Path) -> list[dict[str, Any]]:
    config = YAML(typ="safe").load(path.read_text())
    return list(config["config"]["process"][0]["sample"]["samples"])


def descriptions(path: Path) -> list[str]:
    """Each sample's high-level description, as the trainer's model reads the prompt."""
    return [
        json.loads(trainer.encoder_text(trainer.sample_prompt(s["prompt"], "bcs")))[
            "high_level_description"
        ]
        for s in yaml_samples(path)
    ]


def page_form(client: TestClient, dataset_id: int) -> dict[str, Any]:
    page = BeautifulSoup(client.get(f"/datasets/{dataset_id}/export").text, "html.parser")
    rows = page.select("[data-sample-set] [data-sample]")
    return {
        "sample_kind": [i["value"] for i in page.select("input[name=sample_kind]")],
        "sample_text": [t.text for t in page.select("textarea[name=sample_text]")],
        "sample_source": [i["value"] for i in page.select("input[name=sample_source]")],
        "sample_on": [str(n) for n in range(len(rows))],
        "sample_seeds": "42, 43, 44",
        "sample_strengths": "0.5, 0.75, 1.0",
        "sample_seconds": "",
    }


def test_the_set_saved_on_the_export_page_is_what_the_train_form_trains_with(
    client: TestClient, checkout: Path
) -> None:
    dataset_id = make_dataset(client)
    form = page_form(client, dataset_id)
    first = json.loads(form["sample_text"][0])
    first["high_level_description"] = PEARL
    form["sample_text"][0] = json.dumps(first)
    form["sample_on"] = form["sample_on"][:1] + form["sample_on"][2:]  # the second unticked
    form["sample_seeds"] = "7"
    r = client.post(f"/datasets/{dataset_id}/export", data={**form, "action": "save_samples"})
    assert r.status_code == 200, r.text
    state = BeautifulSoup(r.text, "html.parser").select_one("[data-samples-state]")
    assert state is not None and "Sample set saved" in state.text and "Saved set" in state.text

    # The Train form on the same page sends none of the sample fields.
    r = client.post(
        f"/datasets/{dataset_id}/train",
        data={"aitk_dir": str(checkout), "steps": "20", "save_every": "10", "profile": "16gb"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    job_id = int(r.headers["location"].rsplit("/", 1)[1])
    ended = wait_for(client, job_id, lambda j: j.status is not TrainStatus.running)
    assert ended.status is TrainStatus.done, ended.error
    written = checkout / "config" / "baroque_chiaroscuro.yaml"
    kinds = len(form["sample_kind"])
    assert descriptions(written)[0] == PEARL
    assert len(yaml_samples(written)) == (kinds - 1) * 1 * 3
    assert {s["seed"] for s in yaml_samples(written)} == {7}


def test_the_export_form_saves_an_edited_set_and_the_default_plan_comes_back(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id = make_dataset(client)
    form = page_form(client, dataset_id)
    form["sample_seeds"] = "5, 6"
    r = client.post(f"/datasets/{dataset_id}/export", data={**form, "out_dir": str(tmp_path / "a")})
    assert r.status_code == 200, r.text
    assert client.get(f"/api/datasets/{dataset_id}/samples").json()["seeds"] == [5, 6]
    page = client.get(f"/datasets/{dataset_id}/export").text
    assert 'name="sample_seeds" form="export-form" value="5, 6"' in page and "Saved set" in page

    r = client.post(f"/datasets/{dataset_id}/export", data={**form, "action": "default_samples"})
    assert r.status_code == 200 and "Back to the default plan: the saved" in r.text
    got = client.get(f"/api/datasets/{dataset_id}/samples").json()
    assert got["saved"] is False and got["seeds"] == [42, 43, 44]
    # Dropping it is undoable: the page holds the dropped set for its Undo button.
    undo = BeautifulSoup(r.text, "html.parser").select_one("[data-restore-samples]")
    assert undo is not None
    saved = undo.select_one("input[name=saved]")["value"]  # type: ignore[index]
    r = client.post(str(undo["action"]), data={"saved": saved})
    assert r.status_code == 200 and "The saved sample set is back." in r.text
    assert client.get(f"/api/datasets/{dataset_id}/samples").json()["seeds"] == [5, 6]


def test_the_sample_set_api_round_trip_and_the_export_api_uses_it(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id = make_dataset(client)
    url = f"/api/datasets/{dataset_id}/samples"
    default = client.get(url).json()
    assert default["saved"] is False and default["seeds"] == [42, 43, 44]
    assert all(p["on"] for p in default["prompts"]) and len(default["prompts"]) == 7
    edited = json.loads(json.dumps(default))
    del edited["saved"]
    edited["prompts"][0]["prompt"]["high_level_description"] = PEARL
    edited["prompts"][1]["on"] = False
    edited["strengths"] = [1.0]
    r = client.put(url, json=edited)
    assert r.status_code == 200, r.text
    got = client.get(url).json()
    assert got == {"saved": True, **edited}

    r = client.post(f"/api/datasets/{dataset_id}/export", json={"out_dir": str(tmp_path / "x")})
    assert r.status_code == 200, r.text
    written = tmp_path / "x" / "config" / "baroque_chiaroscuro.yaml"
    assert descriptions(written)[0] == PEARL and len(yaml_samples(written)) == 6 * 3 * 1

    # Refusals are sentences, and leave the saved set as it was.
    bad = json.loads(json.dumps(edited))
    bad["prompts"][2]["prompt"] = "{not json"
    r = client.put(url, json=bad)
    assert r.status_code == 422 and "is not JSON" in r.json()["detail"]
    r = client.put(url, json={**edited, "seeds": ["x"]})
    assert r.status_code == 422 and "are not whole numbers" in r.json()["detail"]
    r = client.put(url, json={**edited, "strengths": [3]})
    assert r.status_code == 422 and "LoRA strengths go from 0" in r.json()["detail"]
    r = client.put(url, json=[1, 2])
    assert r.status_code == 422 and "is an object with prompts" in r.json()["detail"]
    assert client.get(url).json() == got

    assert client.delete(url).json()["saved"] is False
    assert client.get(url).json() == default


def test_atelier_export_writes_the_saved_set(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    dataset_id = make_dataset(client)
    url = f"/api/datasets/{dataset_id}/samples"
    edited = client.get(url).json()
    edited["prompts"][0]["prompt"]["high_level_description"] = PEARL
    edited["seeds"] = [11]
    assert client.put(url, json=edited).status_code == 200
    out = tmp_path / "cli"
    r = atelier("export", "--dataset", "Baroque Chiaroscuro", "--out", str(out), settings=settings)
    assert r.returncode == 0, r.stderr
    written = out / "config" / "baroque_chiaroscuro.yaml"
    assert descriptions(written)[0] == PEARL
    assert {s["seed"] for s in yaml_samples(written)} == {11}


def test_the_train_api_trains_with_the_saved_set(client: TestClient, checkout: Path) -> None:
    dataset_id = make_dataset(client)
    url = f"/api/datasets/{dataset_id}/samples"
    edited = client.get(url).json()
    edited["prompts"][0]["prompt"]["high_level_description"] = PEARL
    edited["strengths"] = [0.5]
    assert client.put(url, json=edited).status_code == 200
    r = client.post(
        f"/api/datasets/{dataset_id}/train",
        json={"aitk_dir": str(checkout), "steps": 20, "save_every": 10, "profile": "16gb"},
    )
    assert r.status_code == 201, r.text
    ended = wait_for(client, r.json()["id"], lambda j: j.status is not TrainStatus.running)
    assert ended.status is TrainStatus.done, ended.error
    written = checkout / "config" / "baroque_chiaroscuro.yaml"
    assert descriptions(written)[0] == PEARL
    assert {s["network_multiplier"] for s in yaml_samples(written)} == {0.5}
