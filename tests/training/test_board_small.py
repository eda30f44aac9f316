"""The board's pick preselects no step of its own and its loss chart has a y-axis (issue 25)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

from fastapi.testclient import TestClient

from app.models import TrainStatus
from app.training.chart import y_ticks
from tests.training.conftest import make_dataset
from tests.training.test_jobs import start, wait_for


def pick_select(html: str) -> str:
    m = re.search(r"<select name=\"step\".*?</select>", html, re.S)
    assert m, "no step select on the board"
    return m[0]


def test_pick_a_step_preselects_no_step_until_favourites_say(
    client: TestClient, checkout: Path
) -> None:
    job = start(client, make_dataset(client), checkout, steps=30, save_every=10)
    wait_for(client, job.id, lambda j: j.status is TrainStatus.done)  # type: ignore[arg-type]
    select = pick_select(client.get(f"/board?job={job.id}").text)
    chosen = re.findall(r'<option value="(\d*)"\s+selected', select)
    # The final step is never chosen for the user: the guide's best is usually earlier.
    assert chosen == [""] and "required" in select
    client.post("/board/favourite", data={"index": 0, "step": 20, "job": job.id})
    select = pick_select(client.get(f"/board?job={job.id}").text)
    assert re.findall(r'<option value="(\d*)"\s+selected', select) == ["20"]


def test_the_loss_chart_has_a_y_axis(client: TestClient, checkout: Path) -> None:
    job = start(client, make_dataset(client), checkout, steps=30, save_every=10)
    wait_for(client, job.id, lambda j: j.status is TrainStatus.done)  # type: ignore[arg-type]
    for url in (f"/board?job={job.id}", f"/training/jobs/{job.id}"):
        html = client.get(url).text
        axis = re.search(r"<g class=\"y-axis\" data-y-axis>(.*?)</g>", html, re.S)
        assert axis, url
        labels = re.findall(r'text-anchor="end">([\d.]+)</text>', axis[1])
        assert len(labels) >= 3 and labels == sorted(labels, key=float)


def test_y_ticks_are_round_values_inside_the_range() -> None:
    chart = SimpleNamespace(low=0.047, high=0.553, height=170)
    ticks = y_ticks(chart)
    assert [label for _, label in ticks] == ["0.1", "0.2", "0.3", "0.4", "0.5"]
    assert all(0 <= y <= 170 for y, _ in ticks) and ticks[0][0] > ticks[-1][0]
    assert y_ticks(SimpleNamespace(low=1.0, high=1.0, height=170)) == []
