"""The draft report, end to end: a dataset drafted through the openai engine against a loopback
server that answers a planted draft, reviewed through the HTTP API as a person would (one
caption edited then approved, one approved as drafted, one left alone), then read back from
the API, the page and the CLI. Every figure is worked out by hand below."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from fastapi.testclient import TestClient

from app.web.app import create_app
from tests.drafting.fake_servers import FakeServer, serving
from tests.drafting.remote_jobs import draft_dataset, remote_settings
from tests.test_cli import atelier

# Boxes in Qwen2-VL's convention: [x1, y1, x2, y2], 0..1000.
PLANTED = {
    "high_level_description": "A cat by a sign.",
    "style_description": {
        "aesthetics": "baroque",
        "lighting": "candle",
        "medium": "painting",
        "technique": "oil",
    },
    "compositional_deconstruction": {
        "background": "dark room",
        "elements": [
            {"type": "obj", "bbox_2d": [0, 0, 500, 500], "desc": "a red cat"},
            {
                "type": "text",
                "bbox_2d": [500, 500, 1000, 1000],
                "text": "EXIT NOW",
                "desc": "a sign",
            },
            {"type": "obj", "bbox_2d": [700, 0, 1000, 200], "desc": "stars in the sky"},
        ],
    },
}


def _edit(caption: dict) -> dict:
    """A person's review of the planted draft (official dialect: [y_min, x_min, y_max, x_max])."""
    caption["high_level_description"] = "A cat beside a sign."
    kept = []
    for element in caption["compositional_deconstruction"]["elements"]:
        if element["desc"] == "a red cat":
            element["bbox"] = [0, 0, 250, 500]  # half as tall: IoU 0.5 with the draft's
            kept.append(element)
        elif element["type"] == "text":
            element["text"] = "EXIT NOW!"  # one character added: CER 1/9
            kept.append(element)
        # the stars are removed
    kept.append({"type": "obj", "bbox": [600, 0, 900, 300], "desc": "a dog"})  # added
    caption["compositional_deconstruction"]["elements"] = kept
    return caption


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], str]:
    """The data dir, the API's report and the page's HTML after the review."""
    tmp = tmp_path_factory.mktemp("report")
    with serving(FakeServer(content=lambda body: json.dumps(PLANTED))) as urls:
        # Built before the per-test environment: the TestClient's host named here.
        settings = remote_settings(tmp, urls, allowed_hosts=["testserver"])
        job, settings = draft_dataset(tmp, urls, images=3, settings=settings)
    assert job.done == 3, job
    app = create_app(settings)
    with TestClient(app) as client:
        (dataset,) = client.get("/api/datasets").json()
        images = client.get(f"/api/datasets/{dataset['id']}/images").json()
        first, second, _third = (i["id"] for i in images)
        view = client.get(f"/api/images/{first}/caption").json()
        saved = client.put(
            f"/api/images/{first}/caption",
            json={"revision": view["revision"], "caption": _edit(view["caption"])},
        )
        assert saved.status_code == 200, saved.text
        for image_id in (first, second):
            r = client.post(f"/api/images/{image_id}/status", json={"status": "approved"})
            assert r.status_code == 200, r.text
        report = client.get(f"/api/datasets/{dataset['id']}/draft-report").json()
        page = client.get(f"/datasets/{dataset['id']}/draft-report").text
    app.state.db.dispose()
    return settings.data_dir, report, page


def test_draft_report_counts_only_reviewed_drafts(reviewed: tuple[Path, list[dict], str]) -> None:
    _, report, _ = reviewed
    (group,) = report
    assert (group["engine"], group["model"]) == ("openai", "qwen2-vl-7b")
    assert group["prompt_label"].startswith("prompt ")
    assert group["images"] == 2  # the third draft was never reviewed
    assert group["kept_unchanged"] == 1


def test_draft_report_figures_equal_hand_computed(reviewed: tuple[Path, list[dict], str]) -> None:
    _, report, _ = reviewed
    (g,) = report
    # Matched boxes: 0.5 and 1 on the edited image, 1, 1, 1 on the one approved as drafted.
    assert g["mean_box_iou"] == pytest.approx(4.5 / 5)
    assert g["elements_added_per_image"] == pytest.approx(0.5)
    assert g["elements_removed_per_image"] == pytest.approx(0.5)
    assert g["transcriptions"] == 2
    assert g["mean_char_error_rate"] == pytest.approx((1 / 9 + 0) / 2)
    # "by" -> "beside": 5 edits over 20 characters, then an unchanged description.
    assert g["edit_ratio"]["high-level description"] == pytest.approx((5 / 20 + 0) / 2)
    assert g["edit_ratio"]["background"] == 0
    assert g["edit_ratio"]["element description"] == 0
    assert g["mean_palette_delta_e"] == pytest.approx(0)
    rewritten = {r["field"]: r["share"] for r in g["rewritten"]}
    assert rewritten == {
        "high-level description": 0.5,
        "element box": 0.5,
        "transcription": 0.5,
        "elements added": 0.5,
        "elements removed": 0.5,
    }


def test_draft_report_page_shows_the_figures(reviewed: tuple[Path, list[dict], str]) -> None:
    _, _, page = reviewed
    soup = BeautifulSoup(page, "html.parser")
    (group,) = soup.select("section.draft-group")
    assert group["data-model"] == "qwen2-vl-7b"
    metric = {td["data-metric"]: td.get_text(strip=True) for td in group.select("td[data-metric]")}
    assert metric["mean_box_iou"] == "0.90"
    assert metric["cer"] == "0.06"
    assert metric["edit:high-level description"] == "0.12"
    assert "transcription: 50 % of images" in group.select_one("ul.rewritten").get_text()


@pytest.mark.slow
def test_draft_report_cli_prints_the_same(reviewed: tuple[Path, list[dict], str]) -> None:
    data_dir, report, _ = reviewed
    result = atelier("draft-report", "--dataset", "Remote", "--json", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == report
    text = atelier("draft-report", "--dataset", "Remote", data_dir=data_dir)
    assert "boxes kept in place    0.90 mean IoU" in text.stdout
    missing = atelier("draft-report", "--dataset", "Nope", data_dir=data_dir)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
