"""What to import: files and folders walked for images, and the one rule that pairs each image
with its caption file, for folders (the CLI) and uploads alike.

The rule, AI-Toolkit's: an image's caption file has its name with `.json` or `.txt` for its
suffix (`.json` preferred when both are there); one caption file may serve every image of its
name (`a.png` and `a.jpg`), as in the trainer. A caption file that is not kept (over 1 MB,
unreadable, a link out of the imported folder, no image of its name) is reported with why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.errors import UserError
from app.images.decode import IMAGE_SUFFIXES

SIDECAR_SUFFIXES = (".json", ".txt")  # AI-Toolkit's caption_ext choices, preferred first
MAX_SIDECAR_BYTES = 1024 * 1024
OVER_LIMIT = "the caption file is over 1 MB and was not read"
NO_IMAGE = "a caption file with no image of the same name"


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


@dataclass(frozen=True)
class CaptionFile:
    """A caption file found beside the images: its text, or the sentence why it is not kept."""

    filename: str  # as the report names it (a path relative to the imported folder)
    content: Sidecar | str

    @property
    def key(self) -> str:
        """The image name it belongs to, without the suffix."""
        return _key(self.filename)

    @property
    def rank(self) -> int:
        return SIDECAR_SUFFIXES.index(Path(self.filename).suffix.lower())


def is_caption_name(name: str) -> bool:
    return Path(name).suffix.lower() in SIDECAR_SUFFIXES


def caption_from_bytes(filename: str, raw: bytes) -> CaptionFile:
    """A caption file from its bytes (an upload), refused past MAX_SIDECAR_BYTES."""
    if len(raw) > MAX_SIDECAR_BYTES:
        return CaptionFile(filename, OVER_LIMIT)
    return CaptionFile(filename, _sidecar(raw, filename))


def caption_from_path(path: Path, filename: str, *, root: Path) -> CaptionFile:
    """A caption file read from disk: never through a link that leads out of `root` (a
    `c.txt -> /proc/self/environ` would otherwise be stored as a caption, and shown)."""
    try:
        target = path.resolve(strict=True)
        if not target.is_relative_to(root.resolve()):
            return CaptionFile(
                filename,
                "the caption file is a link to a file outside the imported folder: not read",
            )
        if not target.is_file():
            return CaptionFile(filename, "the caption file is not a regular file: not read")
        if target.stat().st_size > MAX_SIDECAR_BYTES:
            return CaptionFile(filename, OVER_LIMIT)
        with target.open("rb") as fh:
            raw = fh.read(MAX_SIDECAR_BYTES + 1)  # a file growing meanwhile is still bounded
    except OSError as e:
        return CaptionFile(filename, f"the caption file cannot be read ({e.strerror or e})")
    return caption_from_bytes(filename, raw)


def pair(
    images: list[tuple[Path, str]], captions: list[CaptionFile]
) -> tuple[list[Source], list[Skipped]]:
    """Each image (its spooled or real path, its name) with its caption file, and the caption
    files not kept, each with why."""
    by_key: dict[str, list[CaptionFile]] = {}
    for caption in sorted(captions, key=lambda c: c.rank):
        by_key.setdefault(caption.key, []).append(caption)
    skipped: list[Skipped] = []
    used: set[str] = set()
    sources: list[Source] = []
    for path, name in images:
        chosen = next(
            (c.content for c in by_key.get(_key(name), []) if isinstance(c.content, Sidecar)),
            None,
        )
        sources.append(Source(path, name, chosen))
        used.add(_key(name))
    for key, found in by_key.items():
        kept = False
        for c in found:
            if isinstance(c.content, str):
                skipped.append(Skipped(c.filename, c.content))
            elif key not in used:
                skipped.append(Skipped(c.filename, NO_IMAGE))
            elif kept:
                preferred = next(x for x in found if isinstance(x.content, Sidecar))
                skipped.append(
                    Skipped(c.filename, f"not read: {preferred.filename} is its image's caption")
                )
            else:
                kept = True
    return sources, skipped


def walk_paths(paths: list[Path]) -> tuple[list[Source], list[Skipped]]:
    """Sources from files and folders (recursive, hidden entries skipped), in name order, each
    paired with its caption file; and what was not imported, with why."""
    sources: list[Source] = []
    skipped: list[Skipped] = []
    for given in paths:
        if not given.exists():
            raise UserError(f"{given} does not exist.")
        if given.is_dir():
            root, files = given, [(p, str(p.relative_to(given))) for p in sorted(_walk(given))]
        elif is_caption_name(given.name):
            skipped.append(Skipped(given.name, "a caption file is imported with its image"))
            continue
        else:  # one image: its caption file lies beside it
            root = given.parent
            files = [(given, given.name)]
            for suffix in SIDECAR_SUFFIXES:
                beside = given.with_suffix(suffix)
                if beside.exists() or beside.is_symlink():
                    files.append((beside, beside.name))
        images = [
            (p, n)
            for p, n in files
            # A file given by name is tried whatever its suffix: decoding says why not.
            if p.suffix.lower() in IMAGE_SUFFIXES or (p == given and not given.is_dir())
        ]
        captions = [caption_from_path(p, n, root=root) for p, n in files if is_caption_name(p.name)]
        found, left = pair(images, captions)
        if not given.is_dir():  # captions of other images in that folder are not ours
            left = [s for s in left if s.reason != NO_IMAGE]
        sources += found
        skipped += left
    return sources, skipped


def _key(name: str) -> str:
    path = Path(name)
    return str(path.with_suffix("")) if path.suffix else name


def _sidecar(raw: bytes, filename: str) -> Sidecar:
    # Kept verbatim (invalid UTF-8 replaced, BOM dropped) until the caption parser reads it.
    return Sidecar(raw.decode("utf-8-sig", errors="replace"), Path(filename).suffix[1:].lower())


def _walk(folder: Path) -> list[Path]:
    found: list[Path] = []
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if not entry.is_symlink():  # a linked folder could loop back on itself
                found.extend(_walk(entry))
        elif entry.is_file() or (entry.is_symlink() and is_caption_name(entry.name)):
            found.append(entry)  # a dangling caption link is reported, not passed over
    return found
