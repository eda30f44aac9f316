"""Browser and API uploads: the multipart body read as it streams, each file written into the
data dir's tmp folder under limits checked while it arrives, then paired and imported.

Why not FastAPI's `UploadFile`: it spools the whole request to disk before the route runs, so
a 5 GB upload cost 5 GB of disk before its size was checked. Here a declared Content-Length
over the request's limit is refused before one byte is read, and reading stops the moment a
file passes ATELIER_MAX_FILE_MB or the request passes ATELIER_MAX_UPLOAD_MB; whatever was
written of it is removed with its folder.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio.from_thread
from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header
from sqlmodel import Session
from starlette.requests import ClientDisconnect, Request

from app.config import Settings
from app.errors import Invalid, UserError
from app.images.importer import ImportReport, import_sources
from app.images.sources import MAX_SIDECAR_BYTES, caption_from_bytes, is_caption_name, pair
from app.models import Dataset

# The body's own parts beside the files: the form's field names, a boundary, headers.
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 10_000

# For the OpenAPI document: the body the routes read themselves.
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "Images, and optional .json/.txt captions",
                        }
                    },
                }
            }
        },
    }
}


class UploadTooLarge(UserError):
    status_code = 413


@dataclass
class Received:
    """One file of the upload, written to `path` (images) or held in `data` (captions)."""

    filename: str
    path: Path | None = None
    data: bytes | None = None


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    size: int = 0
    out: IO[bytes] | None = None
    path: Path | None = None
    data: bytearray = field(default_factory=bytearray)


class _Receiver:
    """python-multipart's callbacks: files to disk as they come, with the limits checked."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.settings = settings
        self.folder = folder
        self.parts: list[_Part] = []
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: dict[str, bytes] = {}

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self.header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self.header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise Invalid(f"An upload may hold at most {MAX_PARTS} parts.")
        self.parts.append(_Part())
        self.headers = {}

    def _header_end(self) -> None:
        self.headers[self.header_field.decode("latin-1").lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def _headers_finished(self) -> None:
        part = self.parts[-1]
        _, options = parse_options_header(self.headers.get("content-disposition", b""))
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        raw = options.get(b"filename")
        if raw is None:
            return
        if b"\x00" in raw:
            # No file system allows it, so no real file is named so: a broken or hostile client.
            shown = raw.replace(b"\x00", b"\\0").decode("utf-8", "replace")[:80]
            raise Invalid(
                f"The file name '{shown}' holds a NUL character, which no file name may: "
                "nothing was imported. Rename the file and upload it again."
            )
        # The client's name is a label only; the spooled copy gets a name of ours.
        n = len(self.parts) - 1
        text = raw.decode("utf-8", "replace").replace("\\", "/")
        part.filename = Path(text).name or f"file-{n}"
        if not is_caption_name(part.filename):
            part.path = self.folder / f"{n:06d}{Path(part.filename).suffix.lower()[:10]}"
            part.out = part.path.open("wb")

    def _data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        part.size += end - start
        if part.filename is None:
            if part.size > MAX_FIELD_BYTES:
                raise Invalid(f"The form field {part.name[:40]!r} is over 64 KB.")
        elif part.size > self.settings.max_file_bytes:
            raise UploadTooLarge(
                f"{part.filename} is over the {self.settings.max_file_mb} MB limit "
                "(ATELIER_MAX_FILE_MB): the upload stopped there and nothing of it was "
                "imported. Leave that file out, or raise the limit."
            )
        if part.out is not None:
            part.out.write(data[start:end])
        elif part.size <= MAX_SIDECAR_BYTES + 1:
            part.data.extend(data[start:end])

    def _end(self) -> None:
        part = self.parts[-1]
        if part.out is not None:
            part.out.close()
            part.out = None

    def close(self) -> None:
        for part in self.parts:
            if part.out is not None:
                part.out.close()

    def files(self) -> list[Received]:
        return [
            Received(p.filename, path=p.path, data=None if p.path else bytes(p.data))
            for p in self.parts
            if p.filename is not None and p.name == "files"
        ]


def _chunks(request: Request) -> Iterator[bytes]:
    """The request's body, pulled chunk by chunk from a route's worker thread."""
    stream: AsyncIterator[bytes] = request.stream().__aiter__()

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    while (chunk := anyio.from_thread.run(next_chunk)) is not None:
        yield chunk


@contextlib.contextmanager
def received_files(request: Request, *, settings: Settings) -> Iterator[list[Received]]:
    """The upload's files, spooled into a folder of the data dir's tmp that goes at the end.

    Called from a sync route (a worker thread). Raises UploadTooLarge past a limit and
    Invalid for a body that is not a multipart upload; nothing written stays behind."""
    limit = settings.max_upload_bytes
    too_large = UploadTooLarge(
        f"The upload is over the {settings.max_upload_mb} MB a request may carry "
        "(ATELIER_MAX_UPLOAD_MB): nothing of it was imported. Send the files in smaller batches."
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    kind, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise Invalid("Send the files as a multipart/form-data body, each in a field 'files'.")
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.tmp_dir, prefix="upload-") as tmp:
        receiver = _Receiver(settings, Path(tmp))
        try:
            parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
            read = 0
            for chunk in _chunks(request):
                read += len(chunk)
                if read > limit:
                    raise too_large
                parser.write(chunk)
            parser.finalize()
        except MultipartParseError as e:
            raise Invalid(f"The upload is not a well-formed multipart body ({e}).") from None
        except ClientDisconnect:
            raise Invalid("The upload was cut off before it ended: nothing was imported.") from None
        finally:
            receiver.close()
        files = receiver.files()
        if not files:
            raise Invalid("The upload holds no files: send them in a field named 'files'.")
        yield files


def import_uploads(
    session: Session,
    *,
    settings: Settings,
    dataset: Dataset,
    files: list[Received],
    upload: str | None = None,
) -> ImportReport:
    """Pairs the received captions with their images (app/images/sources.py's one rule), and
    imports them; `upload` names the upload this request is a batch of, for the history."""
    images = [(r.path, r.filename) for r in files if r.path is not None]
    captions = [caption_from_bytes(r.filename, r.data or b"") for r in files if r.path is None]
    sources, skipped = pair(images, captions)
    return import_sources(
        session,
        settings=settings,
        dataset=dataset,
        sources=sources,
        skipped=skipped,
        origin="upload",
        upload=upload,
    )


def remove_leftovers(settings: Settings) -> None:
    """Removes upload folders a killed server left in tmp (at start-up, before any upload)."""
    for folder in settings.tmp_dir.glob("upload-*"):
        shutil.rmtree(folder, ignore_errors=True)
