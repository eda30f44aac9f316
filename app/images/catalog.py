"""A dataset's images: listing with flags, filters and paging; near-duplicate pairs; garbage."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, case, exists, func, or_, text
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from app.datasets import get_dataset, purge_deleted
from app.errors import Invalid, NotFound
from app.images import trash
from app.images.buckets import is_low_resolution
from app.images.store import ContentStore
from app.models import CaptionRevision, CaptionStatus, Dataset, Flag, Image, NearDuplicate

ORPHAN_GRACE_S = 3600  # half-written files in tmp/ while no import is in flight


class Sort(StrEnum):
    """The grid's orders: the dataset's own, and those a reviewer sorts by."""

    position = "position"
    name = "name"
    status = "status"
    newest = "newest"
    resolution = "resolution"
    least_sure = "least_sure"

    @property
    def label(self) -> str:
        return {
            "position": "dataset order",
            "name": "file name",
            "status": "status",
            "newest": "newest first",
            "resolution": "resolution",
            "least_sure": "least sure first",
        }[self.value]


# The review's order, CaptionStatus's own: what still needs a person first, approved last.
STATUS_ORDER = [s.value for s in CaptionStatus]
MAX_SEARCH = 200  # characters of a search: a phrase, not a document


@dataclass(frozen=True)
class ImageRow:
    image: Image
    flags: list[Flag]
    excerpt: str | None = None  # the caption's high-level description, for the grid's tile

    def as_dict(self) -> dict:
        i = self.image
        return {
            "id": i.id,
            "filename": i.filename,
            "width": i.width,
            "height": i.height,
            "sha256": i.sha256,
            "format": i.format,
            "megapixels": i.megapixels,
            "aspect_ratio": i.aspect_ratio,
            "byte_size": i.byte_size,
            "orientation": i.orientation,
            "flags": [f.value for f in self.flags],
            "status": CaptionStatus(i.status).value,
            "has_caption_file": i.caption_raw is not None,
            "caption_error": i.caption_error,
            "revision": i.revision,
            "trashed_at": i.trashed_at,
        }


def _open_pair_exists() -> ColumnElement[bool]:
    """SQL: the image is in a near-duplicate pair not yet resolved, its other image not trashed."""
    nd, other = aliased(NearDuplicate), aliased(Image)
    return exists().where(
        col(nd.kept_both).is_(False),
        or_(
            and_(col(nd.image_a_id) == col(Image.id), col(other.id) == col(nd.image_b_id)),
            and_(col(nd.image_b_id) == col(Image.id), col(other.id) == col(nd.image_a_id)),
        ),
        col(other.trashed_at).is_(None),
    )


def _head_revision_text(search: str) -> ColumnElement[bool]:
    """SQL: a string value of the image's newest caption contains `search` (any case)."""
    # json_tree walks the caption's values only, so a search for "background" matches what a
    # caption says, not the key every caption has.
    return exists(
        select(1)
        .select_from(CaptionRevision)
        .where(
            col(CaptionRevision.image_id) == col(Image.id),
            col(CaptionRevision.number) == col(Image.revision),
            text(
                "EXISTS (SELECT 1 FROM json_tree(captionrevision.caption) AS t "
                "WHERE t.type = 'text' AND t.value LIKE :pattern ESCAPE '\\')"
            ).bindparams(pattern=_like(search)),
        )
    )


def _like(search: str) -> str:
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _search(search: str) -> ColumnElement[bool]:
    """SQL: the file name or the caption's text contains `search`."""
    return or_(col(Image.filename).like(_like(search), escape="\\"), _head_revision_text(search))


def _order(sort: Sort) -> list:
    if sort is Sort.name:
        return [func.lower(col(Image.filename)), col(Image.position)]
    if sort is Sort.status:
        rank = case(
            {s: i for i, s in enumerate(STATUS_ORDER)},
            value=col(Image.status),
            else_=len(STATUS_ORDER),
        )
        return [rank, col(Image.position)]
    if sort is Sort.newest:
        return [col(Image.created_at).desc(), col(Image.position).desc()]
    if sort is Sort.resolution:
        return [(col(Image.width) * col(Image.height)).desc(), col(Image.position)]
    if sort is Sort.least_sure:
        # The drafts the model was least sure of first; images without a figure last.
        return [col(Image.draft_least).is_(None), col(Image.draft_least), col(Image.position)]
    return [col(Image.position)]


def _filters(
    dataset: Dataset,
    status: CaptionStatus | None,
    flag: Flag | None,
    search: str = "",
) -> list[ColumnElement[bool]]:
    # Trashed images are out of every listing and count (app/images/trash.py).
    conds: list[ColumnElement[bool]] = [
        Image.dataset_id == dataset.id,  # type: ignore[list-item]
        col(Image.trashed_at).is_(None),
    ]
    if status is not None:
        conds.append(Image.status == status)  # type: ignore[arg-type]
    if flag is Flag.low_resolution:
        conds.append(_low_resolution(dataset))
    elif flag is Flag.duplicate:
        conds.append(_open_pair_exists())
    elif flag is Flag.unreadable_caption:
        conds.append(col(Image.caption_error).is_not(None))
    elif flag is Flag.ambiguous_boxes:
        conds.append(col(Image.boxes_ambiguous).is_(True))
    elif flag is Flag.transparent:
        conds.append(col(Image.transparent_share) > 0)
    if search.strip():
        conds.append(_search(search.strip()))
    return conds


def list_images(
    session: Session,
    *,
    dataset: Dataset,
    status: CaptionStatus | None = None,
    flag: Flag | None = None,
    search: str = "",
    sort: Sort = Sort.position,
    offset: int = 0,
    limit: int | None = None,
) -> tuple[list[ImageRow], int]:
    """One page of the dataset's images in `sort` order, and the total matching; `search`
    finds a file name or words of the newest caption."""
    if offset < 0 or (limit is not None and limit < 1):
        raise Invalid("offset must be 0 or more and limit 1 or more.")
    if len(search) > MAX_SEARCH:
        raise Invalid(f"Search for at most {MAX_SEARCH} characters.")
    conds = _filters(dataset, status, flag, search)
    total = session.exec(select(func.count()).select_from(Image).where(and_(*conds))).one()
    low_res = _low_resolution(dataset).label("low_res")
    dup = _open_pair_exists().label("dup")
    excerpt = (
        select(func.json_extract(CaptionRevision.caption, "$.high_level_description"))
        .where(
            col(CaptionRevision.image_id) == col(Image.id),
            col(CaptionRevision.number) == col(Image.revision),
        )
        .scalar_subquery()
        .label("excerpt")
    )
    query = select(Image, low_res, dup, excerpt).where(and_(*conds)).order_by(*_order(sort))
    query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    rows = []
    for image, is_low, is_dup, text_ in session.exec(query):
        flags = _flags(image, is_dup=is_dup, is_low=is_low)
        rows.append(ImageRow(image=image, flags=flags, excerpt=text_ or None))
    return rows, total


def matching_ids(
    session: Session,
    *,
    dataset: Dataset,
    status: CaptionStatus | None = None,
    flag: Flag | None = None,
    search: str = "",
) -> list[int]:
    """The ids of every image the grid's filters and search match, in dataset order."""
    conds = _filters(dataset, status, flag, search)
    return list(session.exec(select(Image.id).where(and_(*conds)).order_by(col(Image.position))))  # type: ignore[arg-type]


def images_of(session: Session, *, dataset: Dataset, image_ids: list[int]) -> list[Image]:
    """The dataset's images (not trashed) among `image_ids`; NotFound names one that is not."""
    found = {
        i.id: i
        for i in session.exec(
            select(Image).where(
                Image.dataset_id == dataset.id,
                col(Image.trashed_at).is_(None),
                col(Image.id).in_(image_ids),
            )
        )
    }
    missing = [i for i in image_ids if i not in found]
    if missing:
        raise NotFound(f"Image {missing[0]} is not in the dataset {dataset.name!r}.")
    return [found[i] for i in image_ids]


@dataclass(frozen=True)
class BulkResult:
    changed: int
    without_caption: int  # left as they were: a status needs a caption first

    def sentence(self, done: str) -> str:
        s = f"{self.changed} image{'s' if self.changed != 1 else ''} {done}."
        if self.without_caption:
            n = self.without_caption
            s += f" {n} without a caption left as {'they were' if n != 1 else 'it was'}."
        return s


def set_statuses(session: Session, *, images: list[Image], status: CaptionStatus) -> BulkResult:
    """Sets the review status of those images that have a caption, in one transaction."""
    if status == CaptionStatus.none:
        raise Invalid("'none' means the image has no caption; use needs_review or approved.")
    changed = skipped = 0
    for image in images:
        if image.revision == 0:
            skipped += 1
            continue
        if image.status != status:
            image.status = status
            session.add(image)
        changed += 1
    session.commit()
    return BulkResult(changed=changed, without_caption=skipped)


def counts(session: Session, *, dataset: Dataset) -> dict[str, int]:
    """Counts by caption status and by flag, for the grid's filter bar."""
    out = {s.value: 0 for s in CaptionStatus}
    for status, n in session.exec(
        select(Image.status, func.count())
        .where(Image.dataset_id == dataset.id, col(Image.trashed_at).is_(None))
        .group_by(Image.status)
    ):
        out[CaptionStatus(status).value] = n
    out["all"] = sum(out[s.value] for s in CaptionStatus)
    for flag in Flag:
        out[flag.value] = session.exec(
            select(func.count()).select_from(Image).where(and_(*_filters(dataset, None, flag)))
        ).one()
    return out


def neighbours(
    session: Session,
    *,
    dataset: Dataset,
    image: Image,
    status: CaptionStatus | None = None,
    flag: Flag | None = None,
    sort: Sort = Sort.position,
) -> tuple[int | None, int | None]:
    """The ids of the previous and next image in `sort` order that match the filters."""
    conds = _filters(dataset, status, flag)
    if sort is Sort.position:
        prev = session.exec(
            select(Image.id)
            .where(and_(*conds), col(Image.position) < image.position)
            .order_by(col(Image.position).desc())
            .limit(1)
        ).first()
        nxt = session.exec(
            select(Image.id)
            .where(and_(*conds), col(Image.position) > image.position)
            .order_by(col(Image.position))
            .limit(1)
        ).first()
        return prev, nxt
    # Other orders tie on several columns: walk the ids in order (a dataset holds hundreds).
    ids = list(session.exec(select(Image.id).where(and_(*conds)).order_by(*_order(sort))))
    if image.id not in ids:
        return None, None
    at = ids.index(image.id)
    return (ids[at - 1] if at > 0 else None), (ids[at + 1] if at + 1 < len(ids) else None)


def get_image(session: Session, image_id: int) -> Image:
    image = session.get(Image, image_id)
    if image is None:
        raise NotFound(f"No image has id {image_id}.")
    return image


def image_with_dataset(session: Session, *, image_id: int) -> tuple[Image, Dataset]:
    """The image and the dataset it belongs to; NotFound names the one missing."""
    image = get_image(session, image_id)
    return image, get_dataset(session, image.dataset_id)  # a deleted one's images are away too


def image_flags(session: Session, image: Image, dataset: Dataset) -> list[Flag]:
    is_dup = bool(session.exec(select(_open_pair_exists()).where(Image.id == image.id)).first())
    is_low = is_low_resolution(image.width, image.height, resolution=dataset.resolution)
    return _flags(image, is_dup=is_dup, is_low=is_low)


def _low_resolution(dataset: Dataset) -> ColumnElement[bool]:
    """SQL: the image trains in a smaller bucket than the dataset's resolution (its area)."""
    return is_low_resolution(col(Image.width), col(Image.height), resolution=dataset.resolution)


def _flags(image: Image, *, is_dup: bool, is_low: bool) -> list[Flag]:
    flags = [Flag.duplicate] if is_dup else []
    if is_low:
        flags.append(Flag.low_resolution)
    if image.caption_error is not None:
        flags.append(Flag.unreadable_caption)
    if image.boxes_ambiguous:
        flags.append(Flag.ambiguous_boxes)
    if image.transparent_share:
        flags.append(Flag.transparent)
    return flags


def open_pairs(session: Session, *, dataset: Dataset) -> list[tuple[NearDuplicate, Image, Image]]:
    a, b = aliased(Image), aliased(Image)
    rows = session.exec(
        select(NearDuplicate, a, b)
        .join(a, a.id == NearDuplicate.image_a_id)  # type: ignore[arg-type]
        .join(b, b.id == NearDuplicate.image_b_id)  # type: ignore[arg-type]
        .where(
            NearDuplicate.dataset_id == dataset.id,
            col(NearDuplicate.kept_both).is_(False),
            col(a.trashed_at).is_(None),
            col(b.trashed_at).is_(None),
        )
        .order_by(col(NearDuplicate.id))
    ).all()
    return [(p, ia, ib) for p, ia, ib in rows]


def resolve_pair(session: Session, *, pair_id: int, keep: str) -> Image | None:
    """keep 'a' or 'b': the other image goes to the trash (returned); 'both' keeps both."""
    pair = session.get(NearDuplicate, pair_id)
    if pair is None:
        raise NotFound(f"No near-duplicate pair has id {pair_id}.")
    if keep == "both":
        pair.kept_both = True
        session.add(pair)
        session.commit()
        return None
    if keep in ("a", "b"):
        # The pair stays open: restoring the other image from the trash brings it back.
        other = get_image(session, pair.image_b_id if keep == "a" else pair.image_a_id)
        trash.move_to_trash(session, images=[other])
        return other
    raise Invalid("keep must be 'a', 'b' or 'both'.")


def collect_garbage(session: Session, *, store: ContentStore) -> int:
    """Purges the expired trash, then bytes no image references (a crash's); returns how many."""
    trash.purge_expired(session, store=store)
    purge_deleted(session)  # datasets deleted over 30 days ago; their bytes go below
    # Bytes written since the oldest import in flight began may be its own, rows to come;
    # everything else no image references goes now (a crash's leftovers, a refused import's).
    since = store.imports_in_flight_since()
    now = time.time()
    store.clear_tmp(older_than_s=ORPHAN_GRACE_S if since is None else now - since + 1)
    # Trashed images are rows like any other: their bytes stay until the trash lets them go.
    referenced = set(session.exec(select(Image.sha256).distinct()))
    removed = 0
    for sha in store.all_blob_shas() - referenced:
        path = store.blob_path(sha)
        try:
            if since is not None and path.stat().st_mtime >= since - 1:
                continue
        except FileNotFoundError:
            continue
        store.remove(sha)
        removed += 1
    return removed
