"""The board and the pick over HTTP, on run folders from Atelier and from elsewhere."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

from bs4 import BeautifulSoup
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.models import LoraPick, TrainStatus
from app.training import board as boards
from tests.training.conftest import make_dataset
from tests.training.runfolders import make_run


def soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def board_of(client: TestClient, run: Path, **params: object) -> BeautifulSoup:
    extra = "".join(f"&{k}={v}" for k, v in params.items())
    r = client.get(f"/board?run={quote(str(run))}{extra}")
    assert r.status_code == 200, r.text
    return soup(r.text)


def test_board_groups_by_prompt_with_the_step_0_reference(
    client: TestClient, tmp_path: Path
) -> None:
    run = make_run(tmp_path / "aitk", steps=30)
    page = board_of(client, run)
    groups = page.select("[data-group]")
    assert len(groups) == 2  # two prompts, each at strengths 0.5 and 1.0
    first = groups[0]
    assert first.select_one(".summary").text == "A lighthouse on a cliff at dusk."
    assert [li.text for li in first.select(".elements li")] == ["a lighthouse"]
    heads = [h.text.split()[0] for h in first.select(".col-head")]
    assert heads == ["step", "10", "20", "30"]
    rows = first.select("[data-row-index]")
    assert [r["data-row-index"] for r in rows] == ["0", "1"]
    assert "strength 0.5" in rows[0].select_one(".label").text
    cells = rows[0].select("[data-cell]")
    assert [c["data-step"] for c in cells] == ["0", "10", "20", "30"]
    assert "ref" in cells[0]["class"]
    # The box of the prompt, drawn over the sample: official [y0, x0, y1, x1] in 0..1000.
    box = cells[1].select_one(".prompt-boxes i")["style"]
    assert "left: 40.0%" in box and "top: 10.0%" in box and "width: 20.0%" in box
    assert groups[1].select_one(".summary").text == "a plain text prompt of a cat"


def test_thumbnails_are_cached_and_broken_samples_left_out(
    client: TestClient, tmp_path: Path
) -> None:
    run = make_run(tmp_path / "aitk", steps=20)
    broken = run / "samples" / "1999999999999__000000020_0.jpg"
    broken.write_bytes(b"not a jpeg at all")
    (run / "samples" / ".tmp" / "1999999999999__000000020_1.jpg").write_bytes(b"partial")
    page = board_of(client, run)
    names = [c["data-name"] for c in page.select("[data-cell]")]
    assert broken.name not in names and len(names) == 3 * 4 - 1  # the newer, broken one hides
    # ...and so the step-20 sample of prompt 0 falls back to nothing rather than a broken image.
    assert not page.select('[data-cell][data-index="0"][data-step="20"]')
    name = names[1]
    r = client.get(f"/board/thumb?run={quote(str(run))}&name={name}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    settings = client.app.state.settings  # type: ignore[attr-defined]
    cached = list((settings.training_dir / "thumbs").rglob("*.jpg"))
    assert len(cached) == 3 * 4 - 1
    for bad in ("../../etc/passwd", "config.yaml", broken.name):
        assert (
            client.get(f"/board/thumb?run={quote(str(run))}&name={quote(bad)}").status_code == 404
        )


def test_paging_keeps_a_large_run_to_one_screen(client: TestClient, tmp_path: Path) -> None:
    prompts = [f"prompt number {i}" for i in range(10)]  # 20 rows at two strengths
    run = make_run(tmp_path / "aitk", steps=100, save_every=5, prompts=prompts)
    page = board_of(client, run)
    assert len(page.select("[data-row-index]")) == boards.ROWS_PER_PAGE
    heads = [h.text.split()[0] for h in page.select("[data-group]")[0].select(".col-head")][1:]
    assert heads == [str(s) for s in range(65, 101, 5)]  # the newest steps first
    page4 = board_of(client, run, page=4, sp=1)
    assert [r["data-row-index"] for r in page4.select("[data-row-index]")] == ["18", "19"]
    heads = [h.text.split()[0] for h in page4.select("[data-group]")[0].select(".col-head")][1:]
    assert heads == ["5", "10", "15", "20"]


def test_a_run_from_atelier_keeps_the_prompts_it_started_with(
    client: TestClient, checkout: Path
) -> None:
    dataset_id = make_dataset(client)
    r = client.post(
        f"/api/datasets/{dataset_id}/train",
        json={"aitk_dir": str(checkout), "steps": 20, "save_every": 10},
    )
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 20
    while client.get(f"/api/training/jobs/{job_id}").json()["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    job = client.get(f"/api/training/jobs/{job_id}").json()
    assert job["status"] == TrainStatus.done.value and job["saved_steps"] == [10]
    # Today's config says other things: the board still labels the samples from the YAML
    # the run was started with.
    for config in (Path(job["config"]), Path(job["run_dir"]) / "config.yaml"):
        config.write_text(config.read_text().replace("old woman", "banjo"))
    page = soup(client.get(f"/board?job={job_id}").text)
    summaries = " ".join(s.text for s in page.select(".summary"))
    assert "an old woman" in summaries and "banjo" not in summaries
    by_folder = soup(client.get(f"/board?run={quote(job['run_dir'])}").text)
    assert "an old woman" in " ".join(s.text for s in by_folder.select(".summary"))
    assert len(page.select("[data-row-index]")) == boards.ROWS_PER_PAGE
    assert page.select_one("[data-loss-chart] path")["d"].startswith("M0")
    assert [t.text for t in page.select("[data-loss-chart] .save-mark text")] == ["10"]


def test_favourites_and_use_this_step(client: TestClient, tmp_path: Path) -> None:
    dataset_id = make_dataset(client)
    run = make_run(tmp_path / "aitk", steps=30)
    for index, step in ((0, 20), (2, 20), (1, 10)):
        r = client.post(
            "/board/favourite", data={"run": str(run), "index": index, "step": step},
            headers={"hx-request": "true"},
        )  # fmt: skip
        assert (
            r.status_code == 200 and soup(r.text).select_one("[data-fav]")["aria-pressed"] == "true"
        )
    page = board_of(client, run)
    assert "20 (2 prompts), 10 (1 prompt)" in page.select_one("[data-favourite-steps]").text
    assert page.select_one("[data-pick-step] option[selected]")["value"] == "20"
    loras = tmp_path / "ComfyUI" / "models" / "loras"
    loras.mkdir(parents=True)
    r = client.post(
        "/board/pick",
        data={"run": str(run), "step": 20, "to_dir": str(loras), "dataset_id": dataset_id},
    )
    assert r.status_code == 200, r.text
    copied = loras / "baroque_chiaroscuro_step000020.safetensors"
    assert copied.read_bytes() == (run / "by_hand_000000020.safetensors").read_bytes()
    assert [p.name for p in loras.iterdir()] == [copied.name]
    with Session(client.app.state.db) as session:  # type: ignore[attr-defined]
        pick = session.exec(select(LoraPick)).one()
        assert (pick.dataset_id, pick.step, pick.copied_to) == (dataset_id, 20, str(copied))
    # The last step is the final save, named without a step.
    r = client.post(
        "/board/pick",
        data={"run": str(run), "step": 30, "to_dir": str(loras), "dataset_id": dataset_id},
    )
    assert r.status_code == 200
    assert (loras / "baroque_chiaroscuro_step000030.safetensors").read_bytes() == (
        run / "by_hand.safetensors"
    ).read_bytes()


def test_a_step_the_rotation_deleted_says_which_setting_keeps_it(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id = make_dataset(client)
    run = make_run(tmp_path / "aitk", steps=50, save_every=10, keep=2)
    assert sorted(p.name for p in run.glob("by_hand_*.safetensors")) == [
        "by_hand_000000030.safetensors",
        "by_hand_000000040.safetensors",
    ]
    loras = tmp_path / "loras"
    loras.mkdir()
    r = client.post(
        "/board/pick",
        data={"run": str(run), "step": 10, "to_dir": str(loras), "dataset_id": dataset_id},
        headers={"accept": "text/html"},
    )
    assert r.status_code == 422
    message = soup(r.text).select_one(".error, [role=alert], main").text
    assert (
        "The checkpoint of step 10 is gone: AI-Toolkit keeps only the last 2 saves "
        "(save.max_step_saves_to_keep: 2) and deleted it. Set max_step_saves_to_keep to 6 or "
        "more to keep every save next time"
    ) in " ".join(message.split())
    assert list(loras.iterdir()) == []
    assert (
        "(no checkpoint kept)"
        in board_of(client, run).select_one('[data-pick-step] option[value="10"]').text
    )


def test_bad_run_folders_are_sentences(client: TestClient, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for raw, status, fragment in (
        (str(tmp_path / "empty"), 422, "does not look like an AI-Toolkit run folder"),
        (str(tmp_path / "missing"), 404, "There is no folder"),
        ("relative/run", 422, "full path"),
    ):
        r = client.get(f"/board?run={quote(raw)}")
        assert r.status_code == status and fragment in r.text
    r = client.get("/board/compare?run=/x&s=a")
    assert r.status_code == 422 and "Compare 2 to 4 samples." in r.text


def test_job_config_json_labels_a_run_from_the_ui(client: TestClient, tmp_path: Path) -> None:
    run = make_run(tmp_path / "aitk", steps=10)
    samples = [{"prompt": f"UI prompt {i}", "network_multiplier": 0.75} for i in range(4)]
    process = {"train": {"steps": 10}, "sample": {"samples": samples}}
    ui = {"config": {"name": "by_hand", "process": [process]}}
    (run / ".job_config.json").write_text(json.dumps(ui))
    page = board_of(client, run)
    assert [s.text for s in page.select(".summary")][:2] == ["UI prompt 0", "UI prompt 1"]
    assert ".job_config.json" in page.select_one("main > p.meta").text
