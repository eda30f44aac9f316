"""Where AI-Toolkit is: the checkout training runs in, and the Python of its venv."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.config import Settings
from app.errors import Forbidden, Invalid

# What every AI-Toolkit checkout has: the entry point and the package it imports.
MARKERS = ("run.py", "toolkit/job.py", "toolkit/config.py")
VENV_PYTHONS = ("venv/bin/python", ".venv/bin/python")


@dataclass(frozen=True)
class Checkout:
    root: Path
    python: Path


def is_checkout(path: Path) -> bool:
    """True when the folder holds AI-Toolkit's run.py and toolkit package."""
    return path.is_dir() and all((path / m).is_file() for m in MARKERS)


def find_python(root: Path) -> Path | None:
    """The checkout's venv Python, if it has one where AI-Toolkit's set-up puts it."""
    for rel in VENV_PYTHONS:
        candidate = root / rel
        if candidate.is_file():
            return candidate
    return None


def resolve_checkout(
    *, settings: Settings, folder: str | Path | None = None, python: str | Path | None = None
) -> Checkout:
    """The checkout named (or set in ATELIER_AITK_DIR) with its Python, or why it cannot be."""
    raw = folder if folder not in (None, "") else settings.aitk_dir
    if raw is None:
        raise Invalid(
            "Say where AI-Toolkit is: the folder of its checkout (ATELIER_AITK_DIR, or the "
            "field on the export page)."
        )
    root = Path(str(raw).strip()).expanduser()
    if not root.is_absolute():
        raise Invalid(f"Give the AI-Toolkit folder's full path: {str(raw)!r} is relative.")
    if not root.is_dir():
        raise Invalid(f"There is no folder {str(root)!r}: AI-Toolkit is not there.")
    if not is_checkout(root):
        missing = [m for m in MARKERS if not (root / m).is_file()]
        raise Invalid(
            f"{str(root)!r} is not an AI-Toolkit checkout: it has no {' or '.join(missing)}."
        )
    py_raw = python if python not in (None, "") else settings.aitk_python
    if py_raw is not None:
        py = Path(str(py_raw).strip()).expanduser()
        if not py.is_file():
            raise Invalid(f"There is no Python at {str(py)!r} to run AI-Toolkit with.")
    else:
        found = find_python(root)
        if found is None:
            raise Invalid(
                f"AI-Toolkit at {str(root)!r} has no venv (venv/bin/python or .venv/bin/python): "
                "create it as its README says, or name its Python (ATELIER_AITK_PYTHON)."
            )
        py = found
    return Checkout(root=root.resolve(), python=py)


def from_request(
    *, settings: Settings, folder: str | None, python: str | None
) -> tuple[str | None, str | None]:
    """The checkout and Python a page or API request may name: anything on a loopback
    Atelier; exposed on a network, only what ATELIER_AITK_DIR / ATELIER_AITK_PYTHON say, so
    no request ever chooses a program for the server to run."""
    if not settings.is_exposed:
        return folder, python
    for given, setting, name in (
        (folder, settings.aitk_dir, "ATELIER_AITK_DIR"),
        (python, settings.aitk_python, "ATELIER_AITK_PYTHON"),
    ):
        if given not in (None, "") and (setting is None or Path(given) != setting):
            raise Forbidden(
                f"This Atelier is on the network: the program it runs is set by its owner "
                f"({name}, or the command line), never by a request."
            )
    return None, None


def checkout_note(folder: Path | None) -> str | None:
    """A sentence for the export page when its target folder is an AI-Toolkit checkout."""
    if folder is None or not is_checkout(folder):
        return None
    python = find_python(folder)
    if python is None:
        return f"{folder} is an AI-Toolkit checkout, but it has no venv yet."
    return f"{folder} is an AI-Toolkit checkout: Atelier can train there with {python}."
