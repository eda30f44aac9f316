"""Near-duplicates: the page of open pairs, the API listing them, and resolving a pair."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
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
    request: Request,
    dataset_id: int,
    session: SessionDep,
    trashed: Annotated[list[int], Query()] = [],  # noqa: B006 (FastAPI copies defaults)
) -> Response:
    """The open pairs, and an undo for each image this page moved to the trash (`trashed`,
    carried from one resolve to the next so an earlier undo does not vanish)."""
    dataset = ds.get_dataset(session, dataset_id)
    pairs = catalog.open_pairs(session, dataset=dataset)
    found = [session.get(Image, i) for i in dict.fromkeys(trashed)]
    moved = [m for m in found if m and m.dataset_id == dataset.id and m.trashed_at is not None]

    def back(without: int) -> str:
        rest = [("trashed", m.id) for m in moved if m.id != without]
        return f"/datasets/{dataset.id}/duplicates" + (f"?{urlencode(rest)}" if rest else "")

    context = {"dataset": dataset, "pairs": pairs, "moved": moved, "back": back}
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
    trashed: Annotated[list[int], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
) -> Response:
    """Keeps one (the other goes to the trash, with an undo) or both."""
    moved = catalog.resolve_pair(session, pair_id=pair_id, keep=keep)
    ids = [moved.id, *trashed] if moved is not None and moved.id is not None else list(trashed)
    if not is_htmx(request):
        query = urlencode([("trashed", i) for i in ids])
        return see_other(f"/datasets/{dataset_id}/duplicates" + (f"?{query}" if query else ""))
    return duplicates(request, dataset_id, session, trashed=ids)
