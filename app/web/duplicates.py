"""Near-duplicates: the page of open pairs, the API listing them, and resolving a pair."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from app import datasets as ds
from app.images import catalog
from app.models import Image
from app.web.deps import SessionDep
from app.web.render import is_htmx, render, see_other

router = APIRouter()


class ResolveIn(BaseModel):
    keep: Literal["a", "b", "both"]


@router.get("/api/datasets/{dataset_id}/near-duplicates", tags=["api"])
def near_duplicates(dataset_id: int, session: SessionDep) -> list[dict]:
    """Open near-duplicate pairs, for the user to resolve."""
    dataset = ds.get_dataset(session, dataset_id)
    return [
        {
            "id": p.id,
            "distance": p.distance,
            "image_a": {"id": a.id, "filename": a.filename},
            "image_b": {"id": b.id, "filename": b.filename},
        }
        for p, a, b in catalog.open_pairs(session, dataset=dataset)
    ]


@router.post("/api/near-duplicates/{pair_id}/resolve", tags=["api"], status_code=204)
def resolve_near_duplicate(pair_id: int, body: ResolveIn, session: SessionDep) -> Response:
    """keep 'a' or 'b' moves the other image to the trash; 'both' keeps both, closing the pair."""
    catalog.resolve_pair(session, pair_id=pair_id, keep=body.keep)
    return Response(status_code=204)


@router.get(
    "/datasets/{dataset_id}/duplicates", response_class=HTMLResponse, include_in_schema=False
)
def duplicates(
    request: Request, dataset_id: int, session: SessionDep, trashed: int | None = None
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    pairs = catalog.open_pairs(session, dataset=dataset)
    moved = session.get(Image, trashed) if trashed is not None else None
    if moved is not None and (moved.dataset_id != dataset.id or moved.trashed_at is None):
        moved = None
    context = {"dataset": dataset, "pairs": pairs, "moved": moved}
    return render(request, "duplicates.html", context, block="pairs")


@router.post(
    "/near-duplicates/{pair_id}/resolve", response_class=HTMLResponse, include_in_schema=False
)
def resolve_pair(
    request: Request,
    pair_id: int,
    session: SessionDep,
    keep: Annotated[str, Form()],
    dataset_id: Annotated[int, Form()],
) -> Response:
    """Keeps one (the other goes to the trash, with an undo) or both."""
    moved = catalog.resolve_pair(session, pair_id=pair_id, keep=keep)
    trashed = moved.id if moved is not None else None
    if not is_htmx(request):
        query = f"?trashed={trashed}" if trashed is not None else ""
        return see_other(f"/datasets/{dataset_id}/duplicates{query}")
    return duplicates(request, dataset_id, session, trashed=trashed)
