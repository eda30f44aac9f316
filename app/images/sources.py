"""What to import: files and folders walked for images, each paired with its caption sidecar."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.errors import UserError
from app.images.decode import IMAGE_SUFFIXES

SIDECAR_SUFFIXES = (".json", ".txt")  # AI-Toolkit's caption_ext choices, preferred first
MAX_SIDECAR_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Sidecar:
    text: str
    ext: str  # "json" or "txt"


@dataclass(frozen=True)
class Source:
    path: Path
    filename: str
    sidecar: Sidecar | None = None


@dataclass(frozen=True)
class Skipped:
    filename: str
    reason: str


def walk_paths(paths: list[Path]) -> tuple[list[Source], list[Skipped]]:
    """Sources from files and folders (recursive, hidden entries skipped), in name order."""
    sources: list[Source] = []
    skipped: list[Skipped] = []
    for given in paths:
        if not given.exists():
            raise UserError(f"{given} does not exist.")
        if given.is_dir():
            for path in sorted(_walk(given)):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    sources.append(_with_sidecar(path, str(path.relative_to(given))))
        elif given.suffix.lower() in SIDECAR_SUFFIXES:
            skipped.append(Skipped(given.name, "a caption file is imported with its image"))
        else:
            sources.append(_with_sidecar(given, given.name))
    return sources, skipped


def read_sidecar(path: Path) -> Sidecar | str:
    """The sidecar's text, or a sentence saying why it was not kept."""
    try:
        size = path.stat().st_size
        if size > MAX_SIDECAR_BYTES:
            return f"its caption file {path.name} is over 1 MB and was not kept"
        raw = path.read_bytes()
    except OSError as e:
        return f"its caption file {path.name} cannot be read ({e.strerror or e})"
    # Kept verbatim (invalid UTF-8 replaced, BOM dropped) until the caption parser reads it.
    return Sidecar(text=raw.decode("utf-8-sig", errors="replace"), ext=path.suffix[1:].lower())


def _with_sidecar(path: Path, filename: str) -> Source:
    for suffix in SIDECAR_SUFFIXES:
        candidate = path.with_suffix(suffix)
        if candidate.is_file():
            sidecar = read_sidecar(candidate)
            if isinstance(sidecar, Sidecar):
                return Source(path=path, filename=filename, sidecar=sidecar)
    return Source(path=path, filename=filename)


def _walk(folder: Path) -> list[Path]:
    found: list[Path] = []
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if not entry.is_symlink():  # a linked folder could loop back on itself
                found.extend(_walk(entry))
        elif entry.is_file():
            found.append(entry)
    return found
