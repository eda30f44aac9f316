"""Content-addressed storage of original image bytes and their cached thumbnails."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from app.config import Settings

THUMB_SUFFIX = ".jpg"


def write_atomically(target: Path, data: bytes, *, tmp_dir: Path) -> None:
    """Writes `data` to `target` so that no reader ever sees a half-written file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


class ContentStore:
    """Original bytes under store/ab/<sha256>; thumbnails under thumbs/ab/<sha256>.jpg."""

    def __init__(self, *, store_dir: Path, thumbs_dir: Path, tmp_dir: Path) -> None:
        self.store_dir = store_dir
        self.thumbs_dir = thumbs_dir
        self.tmp_dir = tmp_dir

    def blob_path(self, sha256: str) -> Path:
        _check_sha(sha256)
        return self.store_dir / sha256[:2] / sha256

    def thumb_path(self, sha256: str) -> Path:
        _check_sha(sha256)
        return self.thumbs_dir / sha256[:2] / f"{sha256}{THUMB_SUFFIX}"

    def has_blob(self, sha256: str) -> bool:
        return self.blob_path(sha256).is_file()

    def put_blob(self, sha256: str, data: bytes) -> bool:
        """Stores the bytes unless already present; True when this call wrote them."""
        path = self.blob_path(sha256)
        if path.is_file():
            return False
        write_atomically(path, data, tmp_dir=self.tmp_dir)
        return True

    def put_thumb(self, sha256: str, data: bytes) -> None:
        write_atomically(self.thumb_path(sha256), data, tmp_dir=self.tmp_dir)

    def remove(self, sha256: str) -> None:
        self.blob_path(sha256).unlink(missing_ok=True)
        self.thumb_path(sha256).unlink(missing_ok=True)

    def all_blob_shas(self) -> set[str]:
        return {p.name for p in self.store_dir.glob("??/*") if len(p.name) == 64}

    def clear_tmp(self, *, older_than_s: float) -> None:
        """Removes leftovers of writes interrupted by a crash."""
        now = time.time()
        for p in self.tmp_dir.glob(".part-*"):
            try:
                if now - p.stat().st_mtime >= older_than_s:
                    p.unlink(missing_ok=True)
            except FileNotFoundError:
                pass


def _check_sha(sha256: str) -> None:
    # Paths are built from this string: never let anything but a hex digest through.
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")


def content_store(settings: Settings) -> ContentStore:
    """The store under the settings' data dir."""
    return ContentStore(
        store_dir=settings.store_dir, thumbs_dir=settings.thumbs_dir, tmp_dir=settings.tmp_dir
    )
