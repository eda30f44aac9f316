"""Writes a dataset where AI-Toolkit reads it: DIR/datasets/<slug>/001.png + 001.json ...,
DIR/datasets/<slug>/atelier-manifest.json, and DIR/config/<slug>.yaml.

Safety: everything is written to a staging folder beside the target and renamed into place
at the end, so a crash leaves the previous export as it was. Nothing is deleted that Atelier
did not write: a folder without Atelier's manifest, or a YAML without its header, is refused,
and files the trainer added to an exported folder (its caches) are kept, except the cache
entries of a name that now holds another image (see _drop_stale_caches).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlmodel import Session

from app.captions.revisions import head_captions
from app.captions.schema import Caption, Style
from app.captions.style_block import block_of, effective
from app.config import Settings
from app.datasets import check_trigger_word
from app.errors import Invalid, UserError
from app.export import config_yaml, profiles, samples
from app.export.caption_file import Dialect, TriggerPlacement, caption_text
from app.export.images import Exported, export_png
from app.export.lint import Finding, lint_dataset
from app.export.samples import SampleSet
from app.images.decode_pool import decode_pool
from app.images.store import ContentStore
from app.models import Dataset, Image

__all__ = ["Dialect", "TriggerPlacement", "caption_text"]  # re-exported for callers
MANIFEST = "atelier-manifest.json"
STAGING_MARK = ".atelier-staging"
NAME_MAX, PATH_MAX = 255, 4096  # bytes, as Linux file systems count them
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,199}$")
# The trainer's caches beside the images whose key holds the image's FILE NAME and geometry,
# not its pixels (AI-Toolkit's dataloader_mixins: get_latent_path, get_clip_vision_embeddings
# _path): <stem>_<22 url-safe base64 characters of an md5>.safetensors. Its _t_e_cache is
# keyed by the caption text itself and so stays right.
NAME_KEYED_CACHES = ("_latent_cache", "_clip_vision_cache")
_CACHE_ENTRY = re.compile(r"^(?P<stem>.+)_[A-Za-z0-9_-]{22}\.safetensors$")
SIZE_CACHE = ".aitk_size.json"  # the trainer's image sizes, by "/<name>.png"
GUIDE_REFUSED = (
    "The guide dialect writes pixel boxes [x1, y1, x2, y2], but the ideogram4 trainer reads "
    "every bbox as 0..1000 [y_min, x_min, y_max, x_max]: every box would land in the wrong "
    "place."
)


class ExportRefused(UserError):
    """An export stopped by problems the user may override; `told` says how for each caller."""

    status_code = 422

    def __init__(self, reason: str, *, fix: str = "Fix that", **extra: Any) -> None:
        self.reason, self.fix = reason, fix
        super().__init__(self.told('export anyway with "force": true'), **extra)

    def told(self, how: str) -> str:
        """The sentence, ending with how this caller overrides the refusal."""
        return f"{self.reason} {self.fix}, or {how}."


@dataclass(frozen=True)
class ExportOptions:
    profile: str = profiles.DEFAULT_PROFILE
    dialect: Dialect = "official"
    trigger_placement: TriggerPlacement = "aesthetics"
    max_side: int = 0
    keep_alpha: bool = False
    force: bool = False
    steps: int | None = None  # None: the profile's, the guide's images seen
    samples: SampleSet | None = None  # None: the guide's plan from the dataset's captions
    sample_seconds: float | None = None  # None: the profile's figure


@dataclass
class ExportReport:
    out_dir: Path
    dataset_dir: Path | None
    config_path: Path | None
    zip_path: Path | None
    images: int
    copied: int
    skipped: list[str]
    warnings: list[Finding]
    seconds: float
    kept: list[str] = field(default_factory=list)  # files found in the old export, kept
    stale_cache: int = 0  # trainer cache entries dropped: their name now holds another image
    forced: list[Finding] = field(default_factory=list)  # errors exported anyway

    def as_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "dataset_dir": str(self.dataset_dir) if self.dataset_dir else None,
            "config": str(self.config_path) if self.config_path else None,
            "zip": str(self.zip_path) if self.zip_path else None,
            "images": self.images,
            "copied": self.copied,
            "converted": self.images - self.copied,
            "skipped": self.skipped,
            "warnings": [w.as_dict() for w in self.warnings],
            "forced": [w.as_dict() for w in self.forced],
            "stale_cache_dropped": self.stale_cache,
            "seconds": round(self.seconds, 2),
        }


def export_dataset(
    session: Session,
    *,
    settings: Settings,
    store: ContentStore,
    dataset: Dataset,
    out_dir: Path,
    options: ExportOptions = ExportOptions(),  # noqa: B008 (frozen)
    as_zip: bool = False,
) -> ExportReport:
    """Exports the dataset into `out_dir` (or a zip file there); refuses on lint errors.

    In four phases: check (the options, the lint), place (the folders it writes, whose they
    are), stage (every PNG, caption, manifest and YAML in a staging folder beside them),
    publish (swapped in for the previous export, or zipped)."""
    started = time.perf_counter()
    findings = _check(session, dataset=dataset, options=options)
    place = _place(out_dir, slug=dataset.slug)
    rows, skipped = _captioned(session, settings=settings, store=store, dataset=dataset)
    old_entries = _manifest_entries(place.dataset_dir)
    staging = place.out / f".atelier-export-{place.slug}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(mode=0o700)  # others may not add to it, nor move it out (its ".." entry)
    staged_as = _identity(staging)
    (staging / STAGING_MARK).touch()
    try:
        staged = _stage(
            staging, place, settings=settings, store=store, dataset=dataset, rows=rows,
            options=options, as_zip=as_zip,
        )  # fmt: skip
        report = ExportReport(
            out_dir=place.out,
            dataset_dir=None,
            config_path=None,
            zip_path=None,
            images=len(rows),
            copied=staged.copied,
            skipped=skipped,
            warnings=[f for f in findings if f.severity == "warning"],
            seconds=0.0,
            forced=[f for f in findings if f.severity == "error"],
        )
        _check_staging(staging, staged_as, place.out)
        _publish(
            staging, place, report, old_entries=old_entries, entries=staged.entries, as_zip=as_zip
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


@dataclass(frozen=True)
class _Place:
    """Where an export writes: the output folder, the dataset's folder and YAML in it."""

    out: Path
    slug: str
    dataset_dir: Path
    config: Path


@dataclass(frozen=True)
class _Staged:
    entries: list[dict[str, Any]]  # the manifest's, one an image
    copied: int  # PNGs copied byte for byte


def _check(session: Session, *, dataset: Dataset, options: ExportOptions) -> list[Finding]:
    """The options and the lint's findings; refuses on an error unless forced."""
    profiles.get_profile(options.profile)
    if options.trigger_placement != "none":
        if not dataset.trigger_word.strip():
            raise Invalid("The dataset has no trigger word: set one, or export with no trigger.")
        check_trigger_word(dataset.trigger_word)
    if options.dialect == "guide" and not options.force:
        raise ExportRefused(GUIDE_REFUSED, fix="Choose the official dialect")
    findings = lint_dataset(
        session,
        dataset=dataset,
        placement=options.trigger_placement,
        dialect=options.dialect,
        profile=options.profile,
    )
    errors = [f for f in findings if f.severity == "error"]
    if errors and not options.force:
        first = "; ".join(f"{f.image or 'dataset'}: {f.message}" for f in errors[:3])
        raise ExportRefused(
            f"{len(errors)} problem(s) stop the export ({first}).",
            fix="Fix them",
            findings=[f.as_dict() for f in findings],
        )
    return findings


def _place(out_dir: Path, *, slug: str) -> _Place:
    """The folders the export writes, once it is sure they are Atelier's to replace; what an
    export cut short left there is recovered or cleared first."""
    if not _SLUG.match(slug):
        raise Invalid(f"The dataset's folder name {slug!r} is not safe to write.")
    out = _prepare_out(out_dir)
    target = _inside(out, out / "datasets" / slug)
    config = _inside(out, out / "config" / f"{slug}.yaml")
    _recover(out, slug, target)
    if target.exists() and not (target / MANIFEST).is_file():
        raise Invalid(
            f"{target} exists and was not written by Atelier: choose another folder, or move it."
        )
    if config.exists() and not config.read_text(errors="replace").startswith(
        "# Written by Atelier"
    ):
        raise Invalid(f"{config} exists and was not written by Atelier: move it first.")
    _clear_stale_staging(out)
    return _Place(out, slug, target, config)


def _captioned(
    session: Session, *, settings: Settings, store: ContentStore, dataset: Dataset
) -> tuple[list[tuple[Image, Caption]], list[str]]:
    """The images with a caption (each with its stored file), and the names of those without."""
    everything = head_captions(session, dataset=dataset)
    rows = [(img, cap) for img, cap in everything if cap is not None]
    skipped = [img.filename for img, cap in everything if cap is None]
    missing = [img.filename for img, _ in rows if not store.has_blob(img.sha256)]
    if missing:
        names = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise Invalid(
            f"The stored file of {names} is missing from the data folder ({settings.store_dir}): "
            "restore the folder from a backup, or delete those images and import them again."
        )
    return rows, skipped


def _stage(
    staging: Path,
    place: _Place,
    *,
    settings: Settings,
    store: ContentStore,
    dataset: Dataset,
    rows: list[tuple[Image, Caption]],
    options: ExportOptions,
    as_zip: bool,
) -> _Staged:
    """Writes every PNG and its caption, the manifest and the YAML under `staging`."""
    slug = place.slug
    block = block_of(dataset)
    digits = max(3, len(str(len(rows))))
    stage_ds = staging / "datasets" / slug
    stage_ds.mkdir(parents=True)
    jobs = [
        (store.blob_path(img.sha256), stage_ds / f"{n:0{digits}d}.png", img.orientation)
        for n, (img, _) in enumerate(rows, 1)
    ]
    work = partial(_export_one, keep_alpha=options.keep_alpha, max_side=options.max_side)
    pool = decode_pool(settings.import_workers) if len(jobs) > 1 else None
    results: list[Exported] = list(pool.map(work, jobs, chunksize=4) if pool else map(work, jobs))
    entries = []
    for (img, stored), (_, png, _), done in zip(rows, jobs, results, strict=True):
        text = caption_text(
            effective(stored, block),
            dialect=options.dialect,
            placement=options.trigger_placement,
            width=done.width,
            height=done.height,
        )
        data = text.encode()
        png.with_suffix(".json").write_bytes(data)
        entries.append(
            {
                "name": png.stem,
                "source_sha256": img.sha256,
                "source_filename": img.filename,
                "caption_revision": img.revision,
                "png_sha256": done.sha256,
                "json_sha256": hashlib.sha256(data).hexdigest(),
                "width": done.width,
                "height": done.height,
                "copied": done.copied,
            }
        )
    manifest = {
        "written_by": "Atelier",
        "dataset": dataset.name,
        "slug": slug,
        "exported_at": datetime.now(UTC).isoformat(),
        "profile": options.profile,
        "dialect": options.dialect,
        "trigger_placement": options.trigger_placement,
        "images": entries,
    }
    (stage_ds / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    folder = f"datasets/{slug}" if as_zip else str(place.dataset_dir)
    yaml_text = _yaml(
        dataset, block, folder, options,
        captions=[(img.filename, effective(cap, block)) for img, cap in rows],
        sizes=[(r.width, r.height) for r in results],
    )  # fmt: skip
    (staging / "config").mkdir()
    (staging / "config" / f"{slug}.yaml").write_text(yaml_text)
    return _Staged(entries, sum(r.copied for r in results))


def _publish(
    staging: Path,
    place: _Place,
    report: ExportReport,
    *,
    old_entries: dict[str, dict[str, Any]],
    entries: list[dict[str, Any]],
    as_zip: bool,
) -> None:
    """Zips the staged export, or moves it in for the previous one; `report` says where."""
    slug, target, config = place.slug, place.dataset_dir, place.config
    # Everything on disk before it replaces the previous export (one sync, not one a file).
    os.sync()
    if as_zip:
        report.zip_path = _zip(staging, place.out / f"{slug}.zip")
        return
    config.parent.mkdir(exist_ok=True)
    os.replace(staging / "config" / f"{slug}.yaml", config)
    # Pruned in the old folder, before the swap moves its caches over: a crash
    # after the swap then never leaves stale entries beside the new manifest.
    if target.exists():
        report.stale_cache = _drop_stale_caches(target, old_entries, entries)
    report.kept = _swap_in(staging / "datasets" / slug, target, place.out, slug)
    for published in (target, config):
        if published.is_symlink() or not published.resolve().is_relative_to(place.out):
            raise Invalid(
                f"{published} was replaced by a link out of {place.out} while the export "
                "was published: another process is changing that folder."
            )
    report.dataset_dir, report.config_path = target, config


def _export_one(job: tuple[Path, Path, int], *, keep_alpha: bool, max_side: int) -> Exported:
    src, dst, orientation = job
    return export_png(src, dst, orientation=orientation, keep_alpha=keep_alpha, max_side=max_side)


def _manifest_entries(folder: Path) -> dict[str, dict[str, Any]]:
    """The previous export's images by name (001 ...), from its manifest; {} without one."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        return {e["name"]: e for e in manifest["images"] if isinstance(e, dict)}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _drop_stale_caches(
    folder: Path, old: dict[str, dict[str, Any]], new: list[dict[str, Any]]
) -> int:
    """Deletes the trainer's name-keyed cache entries whose name now holds other pixels.

    A name (001) keeps its entries when the previous export wrote the same PNG there (same
    bytes, so the same image at the same size). Entries of a name that now holds another
    image, another size, or nothing, are deleted: the trainer would pair them with the new
    caption. Returns how many files were deleted.
    """
    now = {e["name"]: e for e in new}

    def stale(stem: str) -> bool:
        before, after = old.get(stem), now.get(stem)
        if before is None and after is None:
            return False  # not a name Atelier ever wrote: not ours to judge
        return (
            before is None
            or after is None
            or (before.get("png_sha256"), before.get("width"), before.get("height"))
            != (after["png_sha256"], after["width"], after["height"])
        )

    dropped = 0
    for cache in NAME_KEYED_CACHES:
        d = folder / cache
        if not d.is_dir():
            continue
        for entry in d.iterdir():
            m = _CACHE_ENTRY.match(entry.name)
            if m and entry.is_file() and stale(m.group("stem")):
                entry.unlink()
                dropped += 1
    _drop_stale_sizes(folder / SIZE_CACHE, stale)
    return dropped


def _drop_stale_sizes(path: Path, stale: Any) -> None:
    """Forgets the trainer's recorded size of each stale name (it checks only size and mtime)."""
    try:
        sizes = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(sizes, dict):
        return
    kept = {k: v for k, v in sizes.items() if k == "__version__" or not stale(Path(k).stem)}
    if kept != sizes:
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(kept))
        os.replace(tmp, path)


def _yaml(
    dataset: Dataset,
    block: dict[str, str],
    folder: str,
    options: ExportOptions,
    *,
    captions: list[tuple[str, Caption]],
    sizes: list[tuple[int, int]],
) -> str:
    # No set given: the one saved with the dataset, so that every way of exporting (the page,
    # the API, the CLI, a training run) writes the samples the user saved.
    stored = None if options.samples else samples.stored_set(dataset)
    return config_yaml.write(
        slug=dataset.slug,
        resolution=dataset.resolution,
        trigger_word=dataset.trigger_word,
        style=style_of(block),
        captions=captions,
        sizes=sizes,
        folder_path=folder,
        profile=options.profile,
        placement=options.trigger_placement,
        steps=options.steps,
        sample_set=options.samples or (stored[0] if stored else None),
        sample_seconds=options.sample_seconds or (stored[1] if stored else None),
        alpha_mask=options.keep_alpha,
        guide_dialect=options.dialect == "guide",
    ).text


def style_of(block: dict[str, str]) -> Style:
    """The dataset's style block as a caption's style."""
    return Style(
        aesthetics=block.get("aesthetics", ""),
        lighting=block.get("lighting", ""),
        medium=block.get("medium") or None,  # type: ignore[arg-type]
        render=block.get("render", ""),
    )


def export_roots(settings: Settings) -> list[Path] | None:
    """The folders a request may export under; None means anywhere on this machine."""
    if settings.export_roots is not None:
        roots = [r.expanduser().resolve() for r in settings.export_roots]
    elif settings.is_exposed:
        roots = [(settings.data_dir / "exports").resolve()]
    else:
        return None
    if settings.is_exposed and settings.aitk_dir is not None:
        roots.append(settings.aitk_dir.expanduser().resolve())  # the owner's own checkout
    return roots


def requested_out_dir(settings: Settings, raw: str) -> Path:
    """The export folder a request names, or a refusal saying why it may not be used.

    The folder must be given in full (no reliance on the server's working directory), may
    not climb with '..', may not be inside Atelier's own data folder (except its exports/),
    and must be under the export roots when those apply (always, when exposed on a network).
    """
    if "\x00" in raw or not raw.strip():
        raise Invalid("Give the full path of a folder to export into.")
    path = Path(raw.strip()).expanduser()
    if not path.is_absolute():
        raise Invalid(f"Give the full path of the folder, from the root: {raw!r} is relative.")
    if ".." in path.parts:
        raise Invalid(f"{raw!r} climbs with '..': give the folder's own full path.")
    check_path_length(path)
    resolved = path.resolve()
    data = settings.data_dir.resolve()
    exports = (settings.data_dir / "exports").resolve()
    if resolved.is_relative_to(data) and not resolved.is_relative_to(exports):
        raise Invalid(f"{raw!r} is inside Atelier's data folder: export somewhere else.")
    roots = export_roots(settings)
    if roots is not None and not any(resolved.is_relative_to(r) for r in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise Invalid(f"This Atelier exports only under {allowed}; {raw!r} is elsewhere.")
    return path


def check_path_length(path: Path) -> None:
    """Refuses a path the file system cannot hold: a name over NAME_MAX or a path over PATH_MAX
    bytes (255 and 4096 on Linux)."""
    long = next((p for p in path.parts if len(os.fsencode(p)) > NAME_MAX), None)
    if long is not None:
        raise Invalid(
            f"The folder name {long[:40]}... is {len(os.fsencode(long))} bytes long; a name may "
            f"be at most {NAME_MAX}: choose a shorter one."
        )
    if len(os.fsencode(str(path))) >= PATH_MAX:
        raise Invalid(
            f"The path is {len(os.fsencode(str(path)))} bytes long; the system takes paths of "
            f"at most {PATH_MAX - 1}: choose a folder nearer the root."
        )


def _prepare_out(out_dir: Path) -> Path:
    out = out_dir.expanduser()
    check_path_length(out)
    try:
        if out.exists() and not out.is_dir():
            raise Invalid(f"{out} is a file, not a folder.")
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # a full disk gets its own sentence (app/web/errors.py)
        raise Invalid(f"Cannot create {out}: {e.strerror}.") from None
    if not os.access(out, os.W_OK):
        raise Invalid(f"{out} is not writable.")
    return out.resolve()


def _identity(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_dev, st.st_ino


def _check_staging(staging: Path, staged_as: tuple[int, int], out: Path) -> None:
    """Refuses to publish from a staging folder that is no longer the one made for this export
    (moved away and replaced, by a link for instance): its files could lie anywhere."""
    try:
        same = not staging.is_symlink() and _identity(staging) == staged_as
    except OSError:
        same = False
    if not same or staging.resolve().parent != out:
        raise Invalid(
            f"The export's staging folder {staging} was moved or replaced while the export "
            f"wrote into it: nothing was published. Another process is changing {out}; stop "
            "it, then export again."
        )


def _inside(out: Path, path: Path) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(out):
        raise Invalid(f"{path} leads outside {out}; refused.")
    return resolved


def _clear_stale_staging(out: Path) -> None:
    """Staging folders left by a crash: only those carrying Atelier's mark are removed."""
    for d in out.glob(".atelier-export-*"):
        if d.is_dir() and (d / STAGING_MARK).is_file():
            shutil.rmtree(d, ignore_errors=True)


def _recover(out: Path, slug: str, target: Path) -> None:
    """Finishes what a crash interrupted in an earlier swap (see _swap_in).

    A crash between its two renames left the previous export aside and none in place: it is
    put back, if complete. A crash while clearing the set-aside folder left it part-cleared:
    the clearing is finished (never is a part-cleared folder put back in place).
    """
    for old in sorted((out / "datasets").glob(f".atelier-old-{slug}-*")):
        if not target.exists() and _complete(old):
            old.rename(target)
        elif target.exists():
            _retire(old, target)


def _complete(folder: Path) -> bool:
    """True when the folder's manifest lists files that are all there."""
    names = _manifest_files(folder)
    return names is not None and all((folder / n).is_file() for n in names)


def _manifest_files(folder: Path) -> set[str] | None:
    """The files an Atelier export wrote in `folder`, from its manifest; None without one."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        names = {MANIFEST}
        for e in manifest.get("images", []):
            names.update({f"{e['name']}.png", f"{e['name']}.json"})
        return names
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _swap_in(staged: Path, target: Path, out: Path, slug: str) -> list[str]:
    """Puts the staged folder in place; the old export's own files go, others stay."""
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        staged.rename(target)
        return []
    old = target.parent / f".atelier-old-{slug}-{uuid.uuid4().hex[:8]}"
    target.rename(old)
    staged.rename(target)
    return _retire(old, target)


def _retire(old: Path, target: Path) -> list[str]:
    """Clears a set-aside export: its own files go; the user's move into the new one.

    Returns the names moved. The manifest goes last, so a crash part-way leaves a folder that
    can still be cleared by the next export, and that _recover never mistakes for complete.
    """
    ours = _manifest_files(old) or set()
    kept = []
    for entry in sorted(old.iterdir()):
        if entry.name == MANIFEST:
            continue
        if entry.name in ours and entry.is_file():
            entry.unlink()
        elif not (target / entry.name).exists():
            entry.rename(target / entry.name)  # e.g. the trainer's latent cache
            kept.append(entry.name)
    if ours:
        (old / MANIFEST).unlink(missing_ok=True)
    # Something of the user's that clashes with a new name stays beside, not deleted.
    with contextlib.suppress(OSError):
        old.rmdir()
    return kept


def _zip(staging: Path, dest: Path) -> Path:
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in sorted(staging.rglob("*")):
            if path.is_file() and path.name != STAGING_MARK:
                zf.write(path, path.relative_to(staging).as_posix())
    os.replace(tmp, dest)
    return dest
