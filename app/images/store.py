"""Content-addressed storage of original image bytes and their cached thumbnails."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from app.config import Settings

THUMB_SUFFIX = ".jpg"
IMPORT_RECORD = "importing-"  # tmp/importing-<pid>-<id>: an import in flight, for the GC


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

    @contextlib.contextmanager
    def importing(self) -> Iterator[None]:
        """Marks an import in flight in this process until it has committed (or given up):
        bytes it writes meanwhile have no image row yet, and garbage collection keeps them."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        record = self.tmp_dir / f"{IMPORT_RECORD}{os.getpid()}-{uuid.uuid4().hex}"
        mark = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        record.write_text(json.dumps(mark))
        try:
            yield
        finally:
            record.unlink(missing_ok=True)

    def imports_in_flight_since(self) -> float | None:
        """When the oldest import still in flight began (None: none is); records left by
        processes that are gone are removed."""
        oldest: float | None = None
        for record in self.tmp_dir.glob(f"{IMPORT_RECORD}*"):
            try:
                mark = json.loads(record.read_text())
                alive = mark["host"] != socket.gethostname() or _alive(int(mark["pid"]))
                started = float(mark["started"])
            except (OSError, ValueError, KeyError, TypeError):
                alive, started = False, 0.0
            if not alive:
                record.unlink(missing_ok=True)
            elif oldest is None or started < oldest:
                oldest = started
        return oldest

    def clear_tmp(self, *, older_than_s: float) -> None:
        """Removes leftovers of writes interrupted by a crash."""
        now = time.time()
        for p in self.tmp_dir.glob(".part-*"):
            try:
                if now - p.stat().st_mtime >= older_than_s:
                    p.unlink(missing_ok=True)
            except FileNotFoundError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_sha(sha256: str) -> None:
    # Paths are built from this string: never let anything but a hex digest through.
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")


def content_store(settings: Settings) -> ContentStore:
    """The store under the settings' data dir."""
    return ContentStore(
        store_dir=settings.store_dir, thumbs_dir=settings.thumbs_dir, tmp_dir=settings.tmp_dir
    )
