"""The draft report: how good the drafts were, against what people kept (page and API)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app import datasets as ds
from app.drafting.report import draft_report, prompt_label
from app.web.deps import SessionDep
from app.web.render import render

router = APIRouter()


@router.get("/api/datasets/{dataset_id}/draft-report", tags=["api"])
def draft_report_json(dataset_id: int, session: SessionDep) -> list[dict]:
    """Per engine, model and prompt: every draft a person edited or approved, against what
    they kept (boxes moved, elements added and removed, transcriptions, descriptions,
    palettes, the fields most rewritten)."""
    dataset = ds.get_dataset(session, dataset_id)
    return [
        g.as_dict() | {"prompt_label": prompt_label(g.prompt)}
        for g in draft_report(session, dataset=dataset)
    ]


@router.get(
    "/datasets/{dataset_id}/draft-report", response_class=HTMLResponse, include_in_schema=False
)
def draft_report_page(request: Request, dataset_id: int, session: SessionDep) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    groups = draft_report(session, dataset=dataset)
    labelled = [(g, prompt_label(g.prompt)) for g in groups]
    return render(request, "draft_report.html", {"dataset": dataset, "groups": labelled})
