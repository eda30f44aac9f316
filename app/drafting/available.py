"""What the drafting card offers: models already on disk (the Hugging Face cache, folders
used by past jobs) with their size, family and whether they fit this GPU; whether a chosen
model is on this machine; the model to recommend or propose; and whether the local engine
would run on the CPU. Nothing here imports torch."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, col, select

from app import gpu
from app.config import Settings
from app.engines.schema import BoxConvention
from app.models import DraftJob

# bf16 weights take their size on disk; activations, the KV cache and CUDA's own context
# want about a fifth more on top (a rough rule: the engine measures before it batches).
FIT_FACTOR = 1.2
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
CPU_WARNING = (
    "No CUDA GPU here: the local engine drafts on the CPU, which takes minutes an image. "
    "A GPU, or a server with the openai engine, is much faster."
)


# The model families the local engine drafts with, by config.json's model_type, and how each
# writes its boxes (app/engines/local/engine.py reads the same from the loaded config).
FAMILIES: dict[str, tuple[str, BoxConvention]] = {
    "qwen2_vl": ("Qwen2-VL", "qwen2vl"),
    "qwen2_5_vl": ("Qwen2.5-VL", "qwen25vl"),
    "qwen3_vl": ("Qwen3-VL", "qwen3vl"),
}
# Proposed where the default does not fit: the smallest model that drafts usable captions.
SMALL_MODEL = "Qwen/Qwen2-VL-2B-Instruct"
# The weights of the models a user is likely to name, in GiB (bf16 safetensors on the Hub),
# to judge whether one fits before it is downloaded.
KNOWN_SIZES_GB = {
    "Qwen/Qwen2-VL-2B-Instruct": 4.1,
    "Qwen/Qwen2-VL-7B-Instruct": 15.5,
    "Qwen/Qwen2.5-VL-3B-Instruct": 7.0,
    "Qwen/Qwen2.5-VL-7B-Instruct": 15.5,
    "Qwen/Qwen3-VL-2B-Instruct": 4.0,
    "Qwen/Qwen3-VL-4B-Instruct": 8.3,
    "Qwen/Qwen3-VL-8B-Instruct": 16.3,
}


@dataclass(frozen=True)
class ModelOnDisk:
    name: str  # what the model field takes: a repo id or a folder
    where: str  # "cache" or "folder"
    size_bytes: int
    fits: bool | None  # None when this machine's GPU memory is unknown
    family: str | None = None  # FAMILIES' model_type, from its config.json

    @property
    def family_label(self) -> str | None:
        return FAMILIES[self.family][0] if self.family in FAMILIES else None

    @property
    def complete(self) -> bool:
        """Whether it has weights (a cache entry can hold only a config, or a download cut)."""
        return self.size_bytes > 0

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "where": self.where,
            "size_gb": round(self.size_bytes / 2**30, 2),
            "fits": self.fits,
            "family": self.family_label,
        }


def hf_cache_dir() -> Path:
    """The Hugging Face cache the local engine reads (HF_HUB_CACHE, HF_HOME or the default)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # without the `draft` extra: the library's default place
        return Path("~/.cache/huggingface/hub").expanduser()
    return Path(constants.HF_HUB_CACHE)


def family_of(folder: Path) -> str | None:
    """The model_type in `folder`'s config.json, when it is a family the engine drafts with."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    kind = config.get("model_type") if isinstance(config, dict) else None
    return kind if kind in FAMILIES else None


def convention_of(family: str | None) -> BoxConvention | None:
    return FAMILIES[family][1] if family in FAMILIES else None


def guess_convention(model: str) -> BoxConvention:
    """How a model a server serves writes boxes, from its name as servers spell it
    (`Qwen/Qwen2.5-VL-7B-Instruct`, `qwen2.5vl:7b`, `qwen3-vl-8b-instruct`); Qwen2-VL's
    0..1000 otherwise."""
    name = model.lower()
    if re.search(r"qwen-?3", name):
        return "qwen3vl"
    if re.search(r"qwen-?2[._]?5", name):
        return "qwen25vl"
    return "qwen2vl"


def is_folder_name(model: str) -> bool:
    """Whether the model field names a folder rather than a Hugging Face repo id."""
    return model.startswith(("/", "~", "."))


def fits_gpu(*, size_bytes: int, gpu_gb: float | None) -> bool | None:
    """Whether weights of `size_bytes` fit a GPU of `gpu_gb` GiB by FIT_FACTOR."""
    if gpu_gb is None:
        return None
    return size_bytes * FIT_FACTOR <= gpu_gb * 2**30


def folder_weights(folder: Path) -> int:
    """Bytes of the weight files under `folder` (0 when there are none)."""
    return sum(
        p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES
    )


def cached_models(*, cache_dir: Path | None = None) -> list[tuple[str, int, Path | None]]:
    """Model repos in the Hugging Face cache, with their sizes and newest snapshot folder."""
    try:  # installed with transformers, the `draft` extra; without it no cache is read
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound
    except ImportError:
        return []
    try:
        info = scan_cache_dir(cache_dir or hf_cache_dir())
    except (CacheNotFound, OSError):
        return []
    found = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        newest = max(repo.revisions, key=lambda r: r.last_modified, default=None)
        found.append((repo.repo_id, repo.size_on_disk, newest.snapshot_path if newest else None))
    return sorted(found)


def past_folders(session: Session) -> list[Path]:
    """Local folders past drafting jobs loaded, those still on disk."""
    names = session.exec(select(DraftJob.model).distinct().order_by(col(DraftJob.model))).all()
    return [Path(n) for n in names if is_folder_name(n) and Path(n).expanduser().is_dir()]


def models_on_disk(
    session: Session,
    *,
    cache_dir: Path | None = None,
    gpu_gb: float | None,
    also: tuple[str, ...] = (),
) -> list[ModelOnDisk]:
    """Every model the local engine could load without a download, the cache's first; `also`
    names folders to list beside those past jobs used (the one chosen now)."""
    found = [
        ModelOnDisk(
            name,
            "cache",
            size,
            fits_gpu(size_bytes=size, gpu_gb=gpu_gb),
            family_of(snapshot) if snapshot else None,
        )
        for name, size, snapshot in cached_models(cache_dir=cache_dir)
    ]
    folders = past_folders(session)
    for name in also:
        if is_folder_name(name) and Path(name).expanduser().is_dir() and Path(name) not in folders:
            folders.append(Path(name))
    for folder in folders:
        found.append(folder_model(folder, gpu_gb=gpu_gb))
    return found


def folder_model(folder: Path, *, gpu_gb: float | None) -> ModelOnDisk:
    size = folder_weights(folder.expanduser())
    return ModelOnDisk(
        str(folder),
        "folder",
        size,
        fits_gpu(size_bytes=size, gpu_gb=gpu_gb),
        family_of(folder.expanduser()),
    )


def locate(model: str, on_disk: list[ModelOnDisk]) -> ModelOnDisk | None:
    """Where `model` (a repo id or a folder) is on this machine, among `on_disk`; a folder
    is looked at even when no job used it yet."""
    for m in on_disk:
        if m.name == model:
            return m
    if is_folder_name(model) and Path(model).expanduser().is_dir():
        return folder_model(Path(model), gpu_gb=None)
    return None


# On the CPU, only a model about the 2B's size drafts in minutes rather than tens of them.
CPU_MAX_BYTES = 6 * 2**30


def recommended(on_disk: list[ModelOnDisk], *, on_cpu: bool = False) -> ModelOnDisk | None:
    """The Qwen3-VL model to recommend: Ideogram 4's own text encoder, and what AI-Toolkit's
    captioner drafts with. The largest on disk that fits this GPU (on the CPU: a small one)."""
    qwen3 = [
        m
        for m in on_disk
        if m.family == "qwen3_vl"
        and m.complete
        and m.fits is not False
        and not (on_cpu and m.size_bytes > CPU_MAX_BYTES)
    ]
    return max(qwen3, key=lambda m: m.size_bytes, default=None)


def model_size_bytes(model: str, on_disk: list[ModelOnDisk]) -> int | None:
    """The weights' size of `model`: measured on disk, else the Hub's for a known repo id."""
    found = locate(model, on_disk)
    if found is not None and found.complete:
        return found.size_bytes
    known = KNOWN_SIZES_GB.get(model)
    return int(known * 2**30) if known else None


def too_large(model: str, on_disk: list[ModelOnDisk], *, gpu_gb: float | None) -> bool:
    """Whether `model` is known not to fit this machine's GPU."""
    size = model_size_bytes(model, on_disk)
    return size is not None and fits_gpu(size_bytes=size, gpu_gb=gpu_gb) is False


def runs_on_cpu(*, engine: str, device: str | None) -> bool:
    """Whether the local engine would draft on the CPU (no CUDA GPU, or cpu asked for)."""
    if engine != "local":
        return False
    if device:
        return device.startswith("cpu")
    return not gpu.cuda_present()


def cpu_warning(settings: Settings, engine: str | None = None) -> str | None:
    """The sentence every page that offers drafting shows when it would run on the CPU;
    `engine`: the one the drafting card chose, when it chose one."""
    cpu = runs_on_cpu(engine=engine or settings.draft_engine, device=settings.draft_device)
    return CPU_WARNING if cpu else None
