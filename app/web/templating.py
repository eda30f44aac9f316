"""Jinja2 templates (autoescaped) with block rendering for HTMX fragments."""

from __future__ import annotations

import json
from pathlib import Path

from jinja2_fragments.fastapi import Jinja2Blocks

from app.models import CaptionStatus, Flag


def previewed_json(preview: list) -> str:
    """Image id -> revision of a dataset-wide preview, for the form that applies it."""
    return json.dumps({item.image_id: item.revision for item in preview})


TEMPLATES_DIR = Path(__file__).resolve().parent.parent.parent / "templates"

templates = Jinja2Blocks(directory=str(TEMPLATES_DIR))
templates.env.autoescape = True
templates.env.globals["STATUSES"] = list(CaptionStatus)
templates.env.globals["FLAGS"] = list(Flag)
templates.env.globals["previewed_json"] = previewed_json
