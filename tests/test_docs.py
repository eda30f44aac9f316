"""The documentation keeps up with the code: every setting the app reads is in
docs/settings.md, every command of the CLI in docs/cli.md, every page the README or docs/
link to exists, and the README stays a front door (at most 200 lines)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from app.cli import cli as cli_app
from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_docs_name_every_setting(field: str) -> None:
    variable = f"ATELIER_{field.upper()}"
    assert f"`{variable}`" in (DOCS / "settings.md").read_text(), (
        f"{variable} is read by app/config.py but not documented in docs/settings.md"
    )


def test_docs_name_no_setting_the_app_lacks() -> None:
    documented = set(re.findall(r"`ATELIER_([A-Z0-9_]+)`", (DOCS / "settings.md").read_text()))
    fields = {name.upper() for name in Settings.model_fields}
    unknown = documented - fields
    assert not unknown, f"docs/settings.md names settings the app lacks: {unknown}"


def test_docs_name_every_command() -> None:
    group = typer.main.get_command(cli_app)
    commands = set(group.commands)  # type: ignore[attr-defined]
    text = (DOCS / "cli.md").read_text()
    missing = {name for name in commands if f"`atelier {name}" not in text}
    assert not missing, f"docs/cli.md does not describe: {sorted(missing)}"


def test_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; the guide belongs in docs/"


def test_docs_links_lead_somewhere() -> None:
    pages = [ROOT / "README.md", ROOT / "bench" / "README.md", *DOCS.glob("*.md")]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, f"links to nothing: {broken}"
