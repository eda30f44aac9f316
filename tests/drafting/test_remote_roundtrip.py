"""A two-line transcription with a quote, drafted by a remote server, survives the editor (its
form submitted as a browser submits it) and the export, character for character."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

from bs4 import BeautifulSoup
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app import datasets as ds
from app.export.writer import ExportOptions, export_dataset
from app.models import Image
from app.web.app import create_app
from tests.drafting.fake_servers import DRAFT, FakeServer, serving
from tests.drafting.remote_jobs import draft_dataset

TRANSCRIPTION = 'ROMA\n"1610"'
DESCRIPTION = 'a stone tablet reading "SPQR" above a door'


def written_draft(body: dict) -> str:
    draft = json.loads(json.dumps(DRAFT))
    draft["high_level_description"] = DESCRIPTION
    draft["compositional_deconstruction"]["elements"].append(
        {
            "type": "text",
            "bbox_2d": [400, 100, 600, 200],
            "text": TRANSCRIPTION,
            "desc": "carved capitals",
        }
    )
    # As the server writes it: the line break and the quotes as JSON escapes.
    return json.dumps(draft)


def elements_of(view: dict) -> list[dict]:
    return view["caption"]["compositional_deconstruction"]["elements"]


def form_as_browser_sends(html: str) -> list[tuple[str, str]]:
    """The caption form's fields as a browser submits them (textareas with CRLF breaks)."""
    form = BeautifulSoup(html, "html.parser").select_one("#caption-form")
    assert form is not None
    fields: list[tuple[str, str]] = []
    for node in form.select("input[name], textarea[name], select[name]"):
        name = str(node["name"])
        if node.name == "textarea":
            # HTML drops one line break right after <textarea>; browsers send CRLF.
            value = node.get_text().removeprefix("\n").replace("\r\n", "\n").replace("\n", "\r\n")
        elif node.name == "select":
            chosen = node.select_one("option[selected]") or node.select_one("option")
            value = str(chosen.get("value", chosen.get_text())) if chosen else ""
        else:
            kind = str(node.get("type", "text"))
            if kind in ("checkbox", "radio") and not node.has_attr("checked"):
                continue
            if kind in ("submit", "button", "file"):
                continue
            value = str(node.get("value", ""))
        fields.append((name, value))
    return fields


def test_a_two_line_transcription_with_quotes_survives_draft_editor_export(
    tmp_path: Path,
) -> None:
    fake = FakeServer("llamacpp", content=written_draft)
    with serving(fake) as urls:
        job, settings = draft_dataset(tmp_path, urls, images=1)
    assert job.status.value == "done" and job.done == 1, job.error

    with TestClient(create_app(settings)) as client:
        app = client.app
        with Session(app.state.db) as session:  # type: ignore[attr-defined]
            image = session.exec(select(Image)).one()
            image_id = image.id
        caption = client.get(f"/api/images/{image_id}/caption").json()
        texts = [e.get("text") for e in elements_of(caption)]
        assert TRANSCRIPTION in texts

        page = client.get(f"/images/{image_id}")
        assert page.status_code == 200
        fields = form_as_browser_sends(page.text)
        assert ("el_text", TRANSCRIPTION.replace("\n", "\r\n")) in fields
        # A person edits another field; the transcription goes back through the form.
        fields = [(k, "a dark stone wall" if k == "background" else v) for k, v in fields]
        saved = client.post(
            f"/images/{image_id}/caption",
            content=urlencode(fields),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert saved.status_code == 200, saved.text
        after = client.get(f"/api/images/{image_id}/caption").json()
        assert after["revision"] > caption["revision"]
        texts = [e.get("text") for e in elements_of(after)]
        assert TRANSCRIPTION in texts
        assert after["caption"]["high_level_description"] == DESCRIPTION
        assert after["caption"]["compositional_deconstruction"]["background"] == (
            "a dark stone wall"
        )

        out = tmp_path / "ai-toolkit"
        with Session(app.state.db) as session:  # type: ignore[attr-defined]
            report = export_dataset(
                session,
                settings=app.state.settings,  # type: ignore[attr-defined]
                store=app.state.store,  # type: ignore[attr-defined]
                dataset=ds.get_dataset(session, image.dataset_id),
                out_dir=out,
                options=ExportOptions(force=True),
            )
    assert report.dataset_dir is not None
    (caption_file,) = [p for p in report.dataset_dir.glob("*.json") if p.stem != "atelier-manifest"]
    written = caption_file.read_text()
    exported = json.loads(written)
    texts = [e.get("text") for e in exported["compositional_deconstruction"]["elements"]]
    assert TRANSCRIPTION in texts  # the line break and the quotes, exactly
    assert '"text":"ROMA\\n\\"1610\\""' in written  # written as the official caption writes it
    assert exported["high_level_description"] == DESCRIPTION
