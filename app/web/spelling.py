"""Which checkpoint still spells right (app/training/spelling.py): start the check of a run's
samples, and read each step's text accuracy (the API and the board's partial)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from app.config import Settings
from app.drafting import choice
from app.drafting.open_engine import open_engine
from app.errors import Invalid, UserError
from app.training import runs, spelling
from app.web.deps import SessionDep, SettingsDep
from app.web.render import is_htmx, render, see_other
from app.web.training import _run

router = APIRouter()

# Run folders being checked now, and why the last check of a run stopped (if it failed).
_checking: set[Path] = set()
_failed: dict[Path, str] = {}
_lock = threading.Lock()


def _target(
    session: Session, settings: Settings, run: str | None, job: int | None
) -> tuple[Path, runs.RunConfig]:
    run_dir, recorded = _run(session, settings, run, job)
    config = runs.read_config(run_dir, recorded.config_yaml if recorded else None)
    if config is None:
        raise Invalid(f"The run folder {run_dir} has no readable config: no prompts to check.")
    if not spelling.targets(config):
        raise Invalid("None of this run's sample prompts holds text: there is nothing to spell.")
    return run_dir, config


def _check(
    settings: Settings, chosen: choice.Chosen, run_dir: Path, config: runs.RunConfig
) -> None:
    try:
        engine = open_engine(
            settings, engine=chosen.engine, model=chosen.model, base_url=chosen.base_url
        )
        try:
            spelling.check_run(
                run_dir=run_dir,
                config=config,
                training_dir=settings.training_dir,
                read=engine.read_texts,
            )
        finally:
            engine.close()
    except (UserError, ValueError, OSError) as e:
        _failed[run_dir] = getattr(e, "message", None) or str(e)
    finally:
        with _lock:
            _checking.discard(run_dir)


def _state(settings: Settings, run_dir: Path) -> dict[str, Any]:
    results = spelling.load(settings.training_dir, run_dir)
    return {
        "steps": spelling.by_step(results),
        "checking": run_dir in _checking,
        "error": _failed.get(run_dir),
        "read": len(results),
    }


@router.post("/api/training/spelling", tags=["training"], status_code=202)
def start_check(
    session: SessionDep, settings: SettingsDep, run: str | None = None, job: int | None = None
) -> dict:
    """Reads back the text of every sample not read yet (the drafting engine reads each text
    element's box alone), in the background; GET the same address for the results."""
    run_dir, config = _target(session, settings, run, job)
    _start(session, settings, run_dir, config)
    return {"run": str(run_dir), "checking": True}


def _start(session: Session, settings: Settings, run_dir: Path, config: runs.RunConfig) -> None:
    chosen = choice.current(session, settings)  # the drafting card's engine, else the settings'
    with _lock:
        started = run_dir not in _checking
        if started:
            _checking.add(run_dir)
            _failed.pop(run_dir, None)
    if started:
        threading.Thread(
            target=_check, args=(settings, chosen, run_dir, config), daemon=True
        ).start()


@router.get("/api/training/spelling", tags=["training"])
def spelling_results(
    session: SessionDep, settings: SettingsDep, run: str | None = None, job: int | None = None
) -> dict:
    """Each step's text accuracy (1 = every text read back exactly), with `falls` where it is
    0.1 or more below the best step before it; blocked (safety filter) samples left out."""
    run_dir, _ = _target(session, settings, run, job)
    state = _state(settings, run_dir)
    return state | {"steps": spelling.as_dict(state["steps"])}


@router.get("/board/spelling", response_class=HTMLResponse, include_in_schema=False)
def board_spelling(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    run: str | None = None,
    job: int | None = None,
) -> Response:
    try:
        run_dir, _ = _target(session, settings, run, job)
    except Invalid as e:
        return render(request, "_spelling.html", {"unavailable": e.message})
    return render(
        request, "_spelling.html", _state(settings, run_dir) | {"query": _query(run_dir, job)}
    )


@router.post("/board/spelling", response_class=HTMLResponse, include_in_schema=False)
def board_spelling_start(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    run: str | None = None,
    job: int | None = None,
) -> Response:
    run_dir, config = _target(session, settings, run, job)
    _start(session, settings, run_dir, config)
    if not is_htmx(request):
        return see_other(f"/board?{_query(run_dir, job)}")
    return render(
        request, "_spelling.html", _state(settings, run_dir) | {"query": _query(run_dir, job)}
    )


def _query(run_dir: Path, job: int | None) -> str:
    return f"job={job}" if job is not None else urlencode({"run": str(run_dir)})
