"""Captions: the editor at /images/{id} (the page, autosave, undo/redo, review, conflicts,
palettes, history) and the caption API (read, save, status, revisions, undo/redo/revert)."""

from __future__ import annotations

import json
import math
from enum import Enum
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field, ValidationError
from sqlmodel import Session
from starlette.datastructures import FormData

from app import datasets as ds
from app.captions import diff, doubts, review_first, revisions, sidecars
from app.captions.boxes import Box
from app.captions.dialects import Dialect, read_official_text, read_submitted, to_official
from app.captions.schema import MEDIA, Caption, Composition, Element, Style
from app.captions.style_block import block_of, effective, field_states, save_block
from app.drafting import choice
from app.drafting.available import cpu_warning
from app.errors import Invalid
from app.export import profiles
from app.images import buckets, catalog
from app.images.palettes import fill_from_pixels
from app.models import CaptionStatus, Dataset, Flag, Image
from app.web.deps import SessionDep, StoreDep, get_settings
from app.web.render import is_htmx, render, see_other

router = APIRouter()

TAGS: list[str | Enum] = ["captions"]


class CaptionPut(BaseModel):
    revision: int = Field(ge=0, description="The revision this caption edits (0: none yet)")
    caption: dict[str, Any]
    dialect: Dialect = "official"
    merge: bool = Field(
        default=False,
        description="When `revision` is stale, merge with the newest caption: the parts "
        "only you changed are yours, the rest theirs; 409 listing the parts both changed",
    )


class RevisionIn(BaseModel):
    revision: int = Field(ge=0, description="The newest revision, as the client last saw it")


class RevertIn(RevisionIn):
    to: int = Field(ge=1, description="The revision to make the newest again")


class StatusIn(BaseModel):
    status: CaptionStatus


# A caption field of the form: far past what the trainer reads of a whole caption (it cuts
# at lint.TOKEN_BUDGET tokens), short of a post that fills the database with one field.
MAX_FIELD_CHARS = 20_000
TextField = Annotated[str, Form(max_length=MAX_FIELD_CHARS)]
ListField = Annotated[list[str], Form()]


def _filters(status: str, flag: str) -> tuple[CaptionStatus | None, Flag | None]:
    try:
        return (CaptionStatus(status) if status else None, Flag(flag) if flag else None)
    except ValueError:
        raise Invalid("Unknown status or flag filter.") from None


def editor_context(
    session: Session,
    image: Image,
    dataset: Dataset,
    *,
    status: str = "",
    flag: str = "",
    sort: str = "",
) -> dict[str, Any]:
    view = revisions.view(session, image, dataset)
    block = block_of(dataset)
    status_filter, flag_filter = _filters(status, flag)
    order = catalog.Sort(sort) if sort in catalog.Sort.__members__ else catalog.Sort.position
    prev_id, next_id = catalog.neighbours(
        session, dataset=dataset, image=image, status=status_filter, flag=flag_filter, sort=order
    )
    query = urlencode(
        {k: v for k, v in {"status": status, "flag": flag, "sort": sort}.items() if v}
    )
    suffix = f"?{query}" if query else ""
    alt_boxes: list[list[float]] = []
    if image.boxes_ambiguous and image.caption_raw is not None:
        try:
            alt_boxes = [
                list(e.box) for e in sidecars.readings(image)[1].composition.elements if e.box
            ]
        except ValueError:
            alt_boxes = []
    draft = revisions.newest_draft(session, image)
    found = doubts.Doubts.from_json(draft.doubts) if draft else None
    now = view.stored or Caption()
    drafted = revisions.parse(draft) if draft else now
    return {
        "doubts": doubts.shown(found, drafted=drafted, now=now),
        "readings": doubts.readings_that_differ(found, now=now),
        "image": image,
        "dataset": dataset,
        "view": view,
        "caption": view.caption or Caption(),
        "states": field_states(view.stored or Caption(), block),
        "block": block,
        "media": MEDIA,
        "flags": catalog.image_flags(session, image, dataset),
        "prev_id": prev_id,
        "prev_url": f"/images/{prev_id}{suffix}" if prev_id else None,
        "next_url": f"/images/{next_id}{suffix}" if next_id else None,
        "filter_query": suffix,
        "status_filter": status,
        "flag_filter": flag,
        "alt_boxes": alt_boxes,
        "box_value": _box_value,
        "crop_fits": _crop_fits(image, dataset),
        "crop_label": _crop_label,
    }


def _crop_fits(image: Image, dataset: Dataset) -> list[buckets.Fit]:
    """The image's bucket and crop at every resolution some profile trains this dataset at."""
    trained = {
        r
        for p in profiles.PROFILES
        for r in profiles.get_profile(p).resolutions(dataset.resolution)
    }
    return [buckets.fit(image.width, image.height, resolution=r) for r in sorted(trained)]


def _crop_label(fit: buckets.Fit) -> str:
    """The crop control's option, e.g. 512 px: 896×288, cuts 1.7% top, 2.0% bottom."""
    x0, y0, x1, y1 = fit.window
    sides = zip((x0, 1 - x1, y0, 1 - y1), ("left", "right", "top", "bottom"), strict=True)
    # Below a billionth of a side is float noise of the window's arithmetic, not a cut.
    cuts = [f"{_share(share)} {side}" for share, side in sides if share > 1e-9]
    size = f"{fit.resolution} px: {fit.bucket_width}×{fit.bucket_height}"
    return f"{size}, cuts {', '.join(cuts)}" if cuts else f"{size}, nothing cut"


def _share(share: float) -> str:
    # Under 0.05% would print as "0.0%": a cut that is there but reads as none.
    return "<0.1%" if share < 0.0005 else f"{share:.1%}"


def _box_value(box: Box | None) -> str:
    return "" if box is None else ",".join(f"{v:.6f}" for v in box)


def _editor_block(
    request: Request, session: Session, image: Image, dataset: Dataset, **extra: Any
) -> Response:
    context = editor_context(
        session,
        image,
        dataset,
        status=request.query_params.get("status", ""),
        flag=request.query_params.get("flag", ""),
        sort=request.query_params.get("sort", ""),
    )
    if not is_htmx(request):
        return see_other(f"/images/{image.id}{context['filter_query']}")
    context["cpu_warning"] = _cpu_warning(request, session)
    return render(request, "image.html", context | extra, block="editor")


def _cpu_warning(request: Request, session: Session) -> str | None:
    """The sentence beside "re-draft" when the local engine would draft on the CPU."""
    settings = get_settings(request)
    # The drafting card's engine, else the settings'.
    return cpu_warning(settings, choice.current(session, settings).engine)


@router.get("/images/{image_id}", response_class=HTMLResponse, include_in_schema=False)
def editor_page(
    request: Request,
    image_id: int,
    session: SessionDep,
    status: str = "",
    flag: str = "",
    sort: str = "",
    weak: int | None = None,
    reviewed: int | None = None,
) -> Response:
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    context = editor_context(session, image, dataset, status=status, flag=flag, sort=sort)
    context["weak_notice"] = _weak_notice(session, dataset, weak)
    context["reviewed_notice"] = _reviewed_notice(session, dataset, reviewed)
    context["cpu_warning"] = _cpu_warning(request, session)
    return render(request, "image.html", context)


def _reviewed_notice(session: Session, dataset: Dataset, image_id: int | None) -> dict | None:
    """What the next image says after `a` or `r` moved on: which image was marked, and how."""
    if image_id is None:
        return None
    image = session.get(Image, image_id)
    if image is None or image.dataset_id != dataset.id:
        return None
    return {"image": image, "status": CaptionStatus(image.status)}


def parse_form(
    *,
    high_level_description: str,
    aesthetics: str,
    lighting: str,
    medium: str,
    render: str,
    palette: str,
    background: str,
    el_type: list[str],
    el_box: list[str],
    el_text: list[str],
    el_desc: list[str],
    el_palette: list[str],
    el_id: list[str] | None = None,
) -> Caption:
    """The caption the editor's form describes; Invalid lists every field that is wrong."""
    # A page loaded before elements had ids sends none: they are named at the save.
    ids = el_id if el_id else [""] * len(el_type)
    columns = (el_type, el_box, el_text, el_desc, el_palette, ids)
    if len({len(c) for c in columns}) != 1:
        raise Invalid("The form's element fields do not line up; reload the page.")
    errors: list[str] = []
    elements = []
    for n, (kind, box, text, desc, colours, eid) in enumerate(zip(*columns, strict=True), 1):
        try:
            elements.append(
                Element(
                    type=kind,  # type: ignore[arg-type]
                    box=_parse_box(box),
                    # Browsers send a textarea's line breaks as CRLF; a caption keeps \n.
                    text=text.replace("\r\n", "\n") if kind == "text" else None,
                    desc=desc,
                    color_palette=_colours(colours),
                    id=eid,
                )
            )
        except (ValidationError, ValueError) as e:
            errors.append(_message(e, f"elements.{n}"))
    try:
        style = Style(
            aesthetics=aesthetics,
            lighting=lighting,
            medium=medium or None,  # type: ignore[arg-type]
            render=render,
            color_palette=_colours(palette),
        )
    except ValidationError as e:
        errors.append(_message(e, "style"))
    if errors:
        raise Invalid("Not saved: " + "; ".join(errors) + ".", errors=errors)
    return Caption(
        high_level_description=high_level_description,
        style=style,
        composition=Composition(background=background, elements=elements),
    )


def _parse_box(value: str) -> Box | None:
    if not value.strip():
        return None
    parts = [float(v) for v in value.split(",")]
    if len(parts) != 4 or not all(math.isfinite(v) for v in parts):
        raise ValueError("its box is not four numbers")
    box = Box.ordered(*parts)
    if box.is_degenerate:
        raise ValueError("its box has no area")
    return box


def _colours(value: str) -> list[str]:
    return [c for c in value.replace(",", " ").split() if c]


def _message(e: Exception, within: str) -> str:
    """'element 2 · palette: ...': what is wrong, named as everywhere else (diff.field_name)."""
    if isinstance(e, ValidationError):
        first = e.errors()[0]
        key = next((str(p) for p in first["loc"] if isinstance(p, str)), "")
        where = diff.field_name(f"{within}.{key}" if key else within)
        return f"{where}: {first['msg'].removeprefix('Value error, ')}"
    return f"{diff.field_name(within)}: {e}"


@router.post("/images/{image_id}/caption", response_class=HTMLResponse, include_in_schema=False)
def save_caption(
    request: Request,
    image_id: int,
    session: SessionDep,
    revision: Annotated[int, Form()],
    high_level_description: TextField = "",
    aesthetics: TextField = "",
    lighting: TextField = "",
    medium: Annotated[str, Form()] = "",
    render: TextField = "",
    palette: Annotated[str, Form()] = "",
    background: TextField = "",
    el_type: ListField = [],  # noqa: B006 (FastAPI copies defaults)
    el_box: ListField = [],  # noqa: B006
    el_text: ListField = [],  # noqa: B006
    el_desc: ListField = [],  # noqa: B006
    el_palette: ListField = [],  # noqa: B006
    el_id: ListField = [],  # noqa: B006
) -> Response:
    """Autosave: saved, merged with a save made elsewhere, parts to choose, or what is wrong."""
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    state: dict[str, Any] = {"image": image, "errors": [], "conflict": None}
    try:
        caption = parse_form(
            high_level_description=high_level_description,
            aesthetics=aesthetics,
            lighting=lighting,
            medium=medium,
            render=render,
            palette=palette,
            background=background,
            el_type=el_type,
            el_box=el_box,
            el_text=el_text,
            el_desc=el_desc,
            el_palette=el_palette,
            el_id=el_id,
        )
    except Invalid as e:
        view = revisions.view(session, image, dataset)
        state |= {"view": view, "revision": revision, "errors": e.extra.get("errors", [])}
        return _save_state(request, state, 422)
    try:
        saved = revisions.save_merging(
            session,
            image=image,
            dataset=dataset,
            caption=caption,
            base=revision,
            keep_approval=True,
        )
    except revisions.MergeConflict as e:
        session.rollback()
        state |= {"view": e.current, "revision": revision, "conflict": _conflict(caption, e)}
        return _save_state(request, state, 409)
    if saved.merged is not None:
        return _merged_editor(request, session, image, dataset, saved)
    if not is_htmx(request):
        return see_other(f"/images/{image_id}")
    view = saved.view
    response = _save_state(request, state | {"view": view, "revision": view.revision}, 200)
    response.headers["HX-Trigger"] = "captionSaved"
    return response


def _conflict(mine: Caption, e: revisions.MergeConflict) -> dict[str, Any]:
    """The merge table's context: the parts both changed, and what merged by itself."""
    return {
        "message": e.message,
        "parts": e.merged.conflicts,
        "from_mine": e.merged.from_mine,
        "from_theirs": e.merged.from_theirs,
        "base": e.base,
        "mine_json": mine.model_dump_json(),
    }


def _merged_editor(
    request: Request, session: Session, image: Image, dataset: Dataset, saved: revisions.MergedSave
) -> Response:
    """The editor, fresh, after a stale save merged by itself with the newest caption."""
    assert saved.merged is not None
    merged = saved.merged
    note = {"revision": saved.theirs, "theirs": merged.from_theirs, "mine": merged.from_mine}
    if not is_htmx(request):
        return see_other(f"/images/{image.id}")
    response = _editor_block(request, session, image, dataset, merged_note=note)
    response.headers["HX-Retarget"] = "#editor"
    response.headers["HX-Reswap"] = "outerHTML"
    response.headers["HX-Trigger"] = "captionSaved"
    return response


def _save_state(request: Request, state: dict[str, Any], status_code: int) -> Response:
    return render(request, "_save_state.html", state, status_code=status_code)


async def _form(request: Request) -> FormData:
    return await request.form()


@router.post("/images/{image_id}/merge", response_class=HTMLResponse, include_in_schema=False)
def merge(
    request: Request,
    image_id: int,
    session: SessionDep,
    form: Annotated[FormData, Depends(_form)],
    revision: Annotated[int, Form()],
    mine: Annotated[str, Form()],
    base: Annotated[int | None, Form()] = None,
) -> Response:
    """Saves the three-way merge, each part both changed taken as the user chose."""
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    try:
        my_caption = Caption.model_validate_json(mine)
    except ValidationError:
        raise Invalid("The caption to merge is damaged; reload the page.") from None
    choices = {k.removeprefix("take:"): v for k, v in form.items() if k.startswith("take:")}
    keep_mine = frozenset(k for k, v in choices.items() if v == "mine")
    merged, current = revisions.merge_with_newest(
        session,
        image=image,
        dataset=dataset,
        mine=my_caption,
        base=revision if base is None else base,
        keep_mine=keep_mine,
    )
    undecided = [p.label for p in merged.conflicts if p.key not in choices]
    if undecided:
        raise Invalid(f"Choose yours or theirs for {', '.join(undecided)}, then save the merge.")
    revisions.save(
        session,
        image=image,
        dataset=dataset,
        caption=merged.caption,
        base=revision,
        note=revisions.merged_note(current.revision),
    )
    return _editor_block(request, session, image, dataset)


@router.get("/images/{image_id}/editor", response_class=HTMLResponse, include_in_schema=False)
def editor_block(request: Request, image_id: int, session: SessionDep) -> Response:
    """The editor's form and painting, fresh: after taking their version of a conflict."""
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    return _editor_block(request, session, image, dataset)


@router.post("/images/{image_id}/undo", response_class=HTMLResponse, include_in_schema=False)
def undo_form(
    request: Request, image_id: int, session: SessionDep, revision: Annotated[int, Form()]
) -> Response:
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    revisions.undo(session, image=image, dataset=dataset, base=revision)
    return _editor_block(request, session, image, dataset)


@router.post("/images/{image_id}/redo", response_class=HTMLResponse, include_in_schema=False)
def redo_form(
    request: Request, image_id: int, session: SessionDep, revision: Annotated[int, Form()]
) -> Response:
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    revisions.redo(session, image=image, dataset=dataset, base=revision)
    return _editor_block(request, session, image, dataset)


@router.post("/images/{image_id}/revert", response_class=HTMLResponse, include_in_schema=False)
def revert_form(
    request: Request,
    image_id: int,
    session: SessionDep,
    revision: Annotated[int, Form()],
    to: Annotated[int, Form()],
) -> Response:
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    revisions.revert(session, image=image, dataset=dataset, base=revision, to=to)
    return _editor_block(request, session, image, dataset)


@router.post("/images/{image_id}/palettes", response_class=HTMLResponse, include_in_schema=False)
def palettes_form(
    request: Request,
    image_id: int,
    session: SessionDep,
    store: StoreDep,
    revision: Annotated[int, Form()],
) -> Response:
    """Fills every palette from the pixels of the saved caption's boxes."""
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    fill_from_pixels(session, store=store, image=image, dataset=dataset, base=revision)
    return _editor_block(request, session, image, dataset)


@router.get("/images/{image_id}/history", response_class=HTMLResponse, include_in_schema=False)
def history(request: Request, image_id: int, session: SessionDep) -> Response:
    """The caption's revisions: the list the editor opens, or a page of its own without JS."""
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    context = {"image": image, "dataset": dataset, "entries": revisions.history(session, image)}
    return render(request, "history.html", context, block="history")


@router.get("/images/{image_id}/review", response_class=HTMLResponse, include_in_schema=False)
def review(
    request: Request, image_id: int, session: SessionDep, weak: int | None = None
) -> Response:
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    context = editor_context(
        session,
        image,
        dataset,
        status=request.query_params.get("status", ""),
        flag=request.query_params.get("flag", ""),
        sort=request.query_params.get("sort", ""),
    )
    context["weak_notice"] = _weak_notice(session, dataset, weak)
    context["review_only"] = True
    return render(request, "_review.html", context)


@router.post("/images/{image_id}/status", response_class=HTMLResponse, include_in_schema=False)
def set_status_form(
    request: Request,
    image_id: int,
    session: SessionDep,
    status: Annotated[CaptionStatus, Form()],
    advance: Annotated[str, Form()] = "",
) -> Response:
    """Sets the review status; with `advance`, opens the next image (keeping the filter)."""
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    revisions.set_status(session, image=image, status=status)
    # Approving a caption that says little still approves it; the next page says why it
    # may be weak (the image is named by id, the reason worked out again there).
    weak = status == CaptionStatus.approved and _weakness(session, image, dataset) is not None
    if advance.startswith("/images/"):
        # The next image confirms what was marked, so a reviewer moving on by key sees it.
        advance += ("&" if "?" in advance else "?") + f"reviewed={image_id}"
        if weak:
            advance += f"&weak={image_id}"
        if is_htmx(request):
            return Response(status_code=204, headers={"HX-Location": advance})
        return see_other(advance)
    if not is_htmx(request):
        suffix = f"?weak={image_id}" if weak else ""
        return see_other(f"/images/{image_id}{suffix}")
    return review(request, image_id, session, weak=image_id if weak else None)


def _weakness(session: Session, image: Image, dataset: Dataset) -> str | None:
    return revisions.weakness(revisions.view(session, image, dataset).caption)


def _weak_notice(session: Session, dataset: Dataset, image_id: int | None) -> dict | None:
    """What the editor says after approving a weak caption: which image, and why."""
    if image_id is None:
        return None
    image = session.get(Image, image_id)
    if image is None or image.dataset_id != dataset.id:
        return None
    why = _weakness(session, image, dataset)
    return {"image": image, "why": why} if why else None


@router.post(
    "/images/{image_id}/style-to-dataset", response_class=HTMLResponse, include_in_schema=False
)
def style_to_dataset(request: Request, image_id: int, session: SessionDep) -> Response:
    """Makes this caption's style (as shown) the dataset's style block."""
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    s = (revisions.view(session, image, dataset).caption or Caption()).style
    save_block(
        session,
        dataset=dataset,
        aesthetics=s.aesthetics,
        lighting=s.lighting,
        medium=s.medium,
        render=s.render,
    )
    return _editor_block(request, session, image, dataset)


def raw_text(view: revisions.CaptionView) -> str:
    """The caption as the trainer reads it (official dialect), indented for a person."""
    caption = to_official(view.caption) if view.caption is not None else None
    return json.dumps(caption, indent=2, ensure_ascii=False) if caption else ""


@router.get("/images/{image_id}/raw", response_class=HTMLResponse, include_in_schema=False)
def raw_json(request: Request, image_id: int, session: SessionDep) -> Response:
    """The raw JSON panel: the newest caption in the official dialect, to edit or paste over."""
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    view = revisions.view(session, image, dataset)
    context = {"image": image, "raw": raw_text(view), "raw_revision": view.revision}
    return render(request, "raw.html", context, block="raw")


@router.post("/images/{image_id}/raw", response_class=HTMLResponse, include_in_schema=False)
def save_raw_json(
    request: Request,
    image_id: int,
    session: SessionDep,
    revision: Annotated[int, Form()],
    raw: Annotated[str, Form(max_length=MAX_FIELD_CHARS * 10)] = "",
) -> Response:
    """Saves pasted or edited official JSON as a revision, like any save (merging if stale)."""
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    try:
        caption = read_official_text(raw, width=image.width, height=image.height)
        revisions.save_merging(
            session, image=image, dataset=dataset, caption=caption, base=revision
        )
    except (Invalid, revisions.MergeConflict) as e:
        session.rollback()
        errors = e.extra.get("errors") or []
        context = {
            "image": image,
            "raw": raw,
            "raw_revision": revision,
            "raw_message": e.message,
            "raw_errors": errors,
        }
        return render(request, "raw.html", context, block="raw", status_code=e.status_code)
    if not is_htmx(request):
        return see_other(f"/images/{image_id}")
    # The panel stays open, on the caption just saved.
    view = revisions.view(session, image, dataset)
    response = _editor_block(
        request,
        session,
        image,
        dataset,
        raw_open=True,
        raw=raw_text(view),
        raw_revision=view.revision,
    )
    response.headers["HX-Retarget"] = "#editor"
    response.headers["HX-Reswap"] = "outerHTML"
    response.headers["HX-Trigger"] = "captionSaved"
    return response


@router.post(
    "/images/{image_id}/copy-previous", response_class=HTMLResponse, include_in_schema=False
)
def copy_previous(
    request: Request,
    image_id: int,
    session: SessionDep,
    revision: Annotated[int, Form()],
    source: Annotated[int, Form()],
    part: Annotated[revisions.CopyPart, Form()],
) -> Response:
    """Copies the style (its words and medium) or the background of another image's caption."""
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    revisions.copy_part(
        session, image=image, dataset=dataset, source_id=source, part=part, base=revision
    )
    return _editor_block(request, session, image, dataset)


# The caption API.


@router.get("/api/images/{image_id}/caption", tags=TAGS)
def get_caption(image_id: int, session: SessionDep) -> dict:
    """The newest caption in the official dialect, with its revision and review status."""
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    return revisions.view(session, image, dataset).as_dict()


@router.get("/api/images/{image_id}/caption/revision", tags=TAGS)
def get_caption_revision(image_id: int, session: SessionDep) -> dict:
    """The newest revision's number, status and author: cheap, for an open editor to poll."""
    image, _ = catalog.image_with_dataset(session, image_id=image_id)
    rev = revisions.head(session, image)
    return {
        "revision": image.revision,
        "status": CaptionStatus(image.status).value,
        "author": rev.author.value if rev else None,
        "saved_at": rev.created_at.isoformat() if rev else None,
    }


@router.get("/api/images/{image_id}/caption/doubts", tags=TAGS)
def get_doubts(image_id: int, session: SessionDep) -> dict:
    """Where the newest draft's model was unsure (each field's and element's least likely
    token and mean probability) and its second readings of text, as stored with the drafted
    revision; `shown` lists the unsure parts that still read as drafted, least sure first."""
    image, _ = catalog.image_with_dataset(session, image_id=image_id)
    return review_first.image_doubts(session, image)


@router.get("/api/datasets/{dataset_id}/doubts", tags=TAGS)
def get_dataset_doubts(
    dataset_id: int, session: SessionDep, limit: Annotated[int, Query(ge=1, le=10000)] = 100
) -> list[dict]:
    """The drafts with parts still to check (an unsure field or box, a second reading that
    differs), least sure first, each with its doubts as `/api/images/{id}/caption/doubts`
    gives them."""
    dataset = ds.get_dataset(session, dataset_id)
    return review_first.to_check(session, dataset=dataset, limit=limit)


@router.put("/api/images/{image_id}/caption", tags=TAGS)
def put_caption(image_id: int, body: CaptionPut, session: SessionDep) -> dict:
    """Saves a caption over `revision`: 409 if stale (unless `merge` can), 422 if invalid."""
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    caption = read_submitted(
        body.caption, dialect=body.dialect, width=image.width, height=image.height
    )
    if not body.merge:
        return revisions.save(
            session, image=image, dataset=dataset, caption=caption, base=body.revision
        ).as_dict()
    result = revisions.save_merging(
        session, image=image, dataset=dataset, caption=caption, base=body.revision
    )
    out = result.view.as_dict()
    if result.merged is not None:
        out["merged"] = {
            "with_revision": result.theirs,
            "yours": result.merged.from_mine,
            "theirs": result.merged.from_theirs,
        }
    return out


@router.post("/api/images/{image_id}/status", tags=TAGS)
def set_status(image_id: int, body: StatusIn, session: SessionDep) -> dict:
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    revisions.set_status(session, image=image, status=body.status)
    view = revisions.view(session, image, dataset)
    out = view.as_dict()
    weak = revisions.weakness(view.caption) if body.status == CaptionStatus.approved else None
    if weak is not None:
        out["warning"] = f"Approved, but it may be weak: {weak}."
    return out


@router.get("/api/images/{image_id}/caption/revisions", tags=TAGS)
def list_revisions(image_id: int, session: SessionDep) -> list[dict]:
    """Every revision, newest first, with who saved it, when, and what it changed."""
    image, _ = catalog.image_with_dataset(session, image_id=image_id)
    return [
        {
            "revision": e.revision.number,
            "author": e.revision.author.value,
            "action": e.revision.action.value,
            "saved_at": e.revision.created_at.isoformat(),
            "changed": e.summary,
            "note": e.revision.note,
            "batch": e.revision.batch,
        }
        for e in revisions.history(session, image)
    ]


@router.get("/api/images/{image_id}/caption/revisions/{number}", tags=TAGS)
def get_revision(image_id: int, number: int, session: SessionDep) -> dict:
    """One revision's caption in the official dialect (with today's dataset style block)."""
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    rev = revisions.get_revision(session, image, number)
    caption = effective(revisions.parse(rev), block_of(dataset))
    return {
        "revision": rev.number,
        "author": rev.author.value,
        "saved_at": rev.created_at.isoformat(),
        "caption": to_official(caption),
    }


@router.post("/api/images/{image_id}/caption/undo", tags=TAGS)
def undo(image_id: int, body: RevisionIn, session: SessionDep) -> dict:
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    return revisions.undo(session, image=image, dataset=dataset, base=body.revision).as_dict()


@router.post("/api/images/{image_id}/caption/redo", tags=TAGS)
def redo(image_id: int, body: RevisionIn, session: SessionDep) -> dict:
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    return revisions.redo(session, image=image, dataset=dataset, base=body.revision).as_dict()


@router.post("/api/images/{image_id}/caption/revert", tags=TAGS)
def revert(image_id: int, body: RevertIn, session: SessionDep) -> dict:
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    return revisions.revert(
        session, image=image, dataset=dataset, base=body.revision, to=body.to
    ).as_dict()


@router.post("/api/images/{image_id}/caption/palettes", tags=TAGS)
def fill_caption_palettes(
    image_id: int, body: RevisionIn, session: SessionDep, store: StoreDep
) -> dict:
    """Fills the image palette and every boxed element's palette from the pixels."""
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    return fill_from_pixels(
        session, store=store, image=image, dataset=dataset, base=body.revision
    ).as_dict()
