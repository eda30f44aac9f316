"""A dataset's import history: every import's report, kept so that it can be read again after
the page that showed it is gone (a reload, another day)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from app.models import Dataset, ImportRecord

HISTORY_LIMIT = 100  # imports (an upload's batches count as one) a history page shows


@dataclass
class Import:
    """One import as the history shows it: an upload's batches merged into one report."""

    created_at: datetime
    origin: str
    report: dict


def record(
    session: Session, *, dataset: Dataset, report: dict, origin: str, upload: str | None
) -> int | None:
    """Keeps `report` in the dataset's history; returns the row's id."""
    row = ImportRecord(
        dataset_id=dataset.id,  # type: ignore[arg-type]
        origin=origin,
        upload=upload[:64] if upload else None,
        imported=len(report["imported"]),
        duplicates=len(report["duplicates"]),
        refused=len(report["refused"]),
        report=json.dumps(report, default=str),
    )
    session.add(row)
    session.commit()
    return row.id


def imports(session: Session, *, dataset: Dataset, upload: str | None = None) -> list[Import]:
    """The dataset's imports, newest first (only the one `upload`, when given)."""
    query = select(ImportRecord).where(ImportRecord.dataset_id == dataset.id)
    if upload:
        query = query.where(ImportRecord.upload == upload)
    rows = session.exec(query.order_by(col(ImportRecord.id))).all()
    merged: dict[str, Import] = {}
    for row in rows:
        key = row.upload or f"#{row.id}"
        report = json.loads(row.report)
        found = merged.get(key)
        if found is None:
            merged[key] = Import(row.created_at, row.origin, report)
            continue
        for part in ("refused", "imported", "duplicates", "near_duplicates"):
            found.report[part] = found.report.get(part, []) + report.get(part, [])
    return list(reversed(merged.values()))[:HISTORY_LIMIT]
