"""Jinja2 templates (autoescaped) with block rendering for HTMX fragments."""

from __future__ import annotations

from pathlib import Path

from jinja2_fragments.fastapi import Jinja2Blocks

from app.models import CaptionStatus, Flag

TEMPLATES_DIR = Path(__file__).resolve().parent.parent.parent / "templates"

templates = Jinja2Blocks(directory=str(TEMPLATES_DIR))
templates.env.autoescape = True
templates.env.globals["STATUSES"] = list(CaptionStatus)
templates.env.globals["FLAGS"] = list(Flag)
