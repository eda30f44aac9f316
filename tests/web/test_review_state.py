"""Review state is honest: a caption changed after it was approved needs review again, its
history says why, and the grid's filter finds it."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app import datasets as ds
from app.captions import revisions
from app.db import make_engine, migrate
from app.drafting import jobs
from app.drafting.open_engine import open_engine
from app.models import CaptionStatus, Image
from tests.drafting.fake_servers import DRAFT, FakeServer, serving
from tests.drafting.remote_jobs import claimed_job, remote_settings, run
from tests.web.test_api_captions import CAPTION, image_id, put
from tests.web.test_editor_pages import HX, form, soup

WHY = "changed after it was approved"


def approve(client: TestClient, iid: int) -> None:
    r = client.post(f"/api/images/{iid}/status", json={"status": "approved"})
    assert r.json()["status"] == "approved"


def assert_needs_review(client: TestClient, dataset_id: int, iid: int, because: str) -> None:
    """Not approved in the API, the editor and the grid; the history's newest note says why."""
    assert client.get(f"/api/images/{iid}/caption").json()["status"] == "needs_review"
    newest = client.get(f"/api/images/{iid}/caption/revisions").json()[0]
    assert because in newest["note"] and WHY in newest["note"]
    page = soup(client.get(f"/images/{iid}").text)
    assert page.select_one("#review [data-status]")["data-status"] == "needs_review"  # type: ignore[index]
    history = soup(client.get(f"/images/{iid}/history").text).select_one("#history-list li")
    assert history is not None and WHY in history.text
    grid = soup(client.get(f"/datasets/{dataset_id}?status=needs_review").text)
    assert [t["data-image-id"] for t in grid.select("[data-grid] .tile")] == [str(iid)]
    approved = soup(client.get(f"/datasets/{dataset_id}?status=approved").text)
    assert approved.select("[data-grid] .tile") == []


def test_a_script_changing_an_approved_caption_withdraws_the_approval(
    client: TestClient, dataset_id: int
) -> None:
    iid = image_id(client, dataset_id)
    put(client, iid, 0, CAPTION)
    approve(client, iid)
    put(client, iid, 1, CAPTION | {"high_level_description": "A monk reads."})
    assert_needs_review(client, dataset_id, iid, because=WHY)


def test_find_and_replace_over_an_approved_caption_withdraws_the_approval(
    client: TestClient, dataset_id: int
) -> None:
    iid = image_id(client, dataset_id)
    put(client, iid, 0, CAPTION)
    approve(client, iid)
    body = {"find": "scholar", "replace": "monk"}
    preview = client.post(f"/api/datasets/{dataset_id}/replace", json=body).json()["preview"]
    previewed = {str(p["image_id"]): p["revision"] for p in preview}
    done = client.post(f"/api/datasets/{dataset_id}/replace", json=body | {"previewed": previewed})
    assert done.json()["changed"] == 1
    assert_needs_review(client, dataset_id, iid, because="replaced 'scholar' with 'monk'")


def test_a_stale_editor_save_merged_into_an_approved_caption_withdraws_the_approval(
    client: TestClient, dataset_id: int
) -> None:
    iid = image_id(client, dataset_id)
    client.post(f"/images/{iid}/caption", data=form(0, background="a wall"), headers=HX)
    # Another tab saves revision 2 and a reviewer approves it; this tab still edits revision 1.
    client.post(
        f"/images/{iid}/caption",
        data=form(1, background="a wall", high_level_description="a saint"),
        headers=HX,
    )
    approve(client, iid)
    r = client.post(f"/images/{iid}/caption", data=form(1, background="a stone wall"), headers=HX)
    assert r.status_code == 200 and r.headers["HX-Retarget"] == "#editor"
    assert_needs_review(client, dataset_id, iid, because="merged with revision 2")


def test_the_reviewer_typing_in_the_editor_keeps_the_approval(
    client: TestClient, dataset_id: int
) -> None:
    iid = image_id(client, dataset_id)
    client.post(f"/images/{iid}/caption", data=form(0, background="a wall"), headers=HX)
    approve(client, iid)
    client.post(f"/images/{iid}/caption", data=form(1, background="a stone wall"), headers=HX)
    assert client.get(f"/api/images/{iid}/caption").json()["status"] == "approved"


def test_a_redraft_over_an_approved_caption_withdraws_the_approval(tmp_path: Path) -> None:
    server = FakeServer("vllm")
    with serving(server) as urls:
        settings = remote_settings(tmp_path, urls)
        db = make_engine(settings)
        migrate(db)
        engine = open_engine(settings)
        try:
            first = claimed_job(db, settings, tmp_path / "src", images=1)
            assert run(db, settings, first, engine).done == 1
            with Session(db) as session:
                image = session.exec(select(Image)).one()
                revisions.set_status(session, image=image, status=CaptionStatus.approved)
                dataset = ds.get_dataset(session, image.dataset_id)
                # The model reads it otherwise this time.
                server.content = lambda body: json.dumps(DRAFT | {"high_level_description": "x"})
                # As the editor's "re-draft" asks for it: this image, replacing what is there.
                again = jobs.create_job(
                    session,
                    dataset=dataset,
                    engine="openai",
                    model=settings.draft_model,
                    batch_size=0,
                    scope="selection",
                    image_ids=[image.id],  # type: ignore[list-item]
                    overwrite_edited=True,
                    worker=jobs.worker_id(),
                )
                assert again.id is not None
                job_id = again.id
            assert run(db, settings, job_id, engine).done == 1
            with Session(db) as session:
                image = session.exec(select(Image)).one()
                assert image.status == CaptionStatus.needs_review
                newest = revisions.history(session, image)[0].revision
                assert newest.action.value == "draft" and WHY in newest.note
        finally:
            engine.close()
            db.dispose()


def test_the_editor_and_the_api_answer_a_conflict_with_one_sentence(
    client: TestClient, dataset_id: int
) -> None:
    """One caption-save path: the editor's stale save and the API's merge say the same."""
    a, b = image_id(client, dataset_id, 1), image_id(client, dataset_id, 2)
    for iid in (a, b):
        client.post(f"/images/{iid}/caption", data=form(0, background="a wall"), headers=HX)
        client.post(f"/images/{iid}/caption", data=form(1, background="theirs"), headers=HX)
    r = client.post(f"/images/{a}/caption", data=form(1, background="mine"), headers=HX)
    assert r.status_code == 409
    editor = soup(r.text).select_one("[data-conflict] .error").text  # type: ignore[union-attr]
    mine = client.get(f"/api/images/{b}/caption/revisions/1").json()["caption"]
    mine["compositional_deconstruction"]["background"] = "mine"
    api = put(client, b, 1, mine, merge=True)
    assert api.status_code == 409
    assert editor == api.json()["detail"]
