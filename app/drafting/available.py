"""What the drafting card offers: models already on disk (the Hugging Face cache, folders
used by past jobs) with their size and whether they fit this GPU, and whether the local
engine would run on the CPU. Nothing here imports torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, col, select

from app import gpu
from app.config import Settings
from app.models import DraftJob

# bf16 weights take their size on disk; activations, the KV cache and CUDA's own context
# want about a fifth more on top (a rough rule: the engine measures before it batches).
FIT_FACTOR = 1.2
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
CPU_WARNING = (
    "No CUDA GPU here: the local engine drafts on the CPU, which takes minutes an image. "
    "A GPU, or a server with the openai engine, is much faster."
)


@dataclass(frozen=True)
class ModelOnDisk:
    name: str  # what the model field takes: a repo id or a folder
    where: str  # "cache" or "folder"
    size_bytes: int
    fits: bool | None  # None when this machine's GPU memory is unknown

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "where": self.where,
            "size_gb": round(self.size_bytes / 2**30, 2),
            "fits": self.fits,
        }


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


def cached_models(*, cache_dir: Path | None = None) -> list[tuple[str, int]]:
    """Model repos in the Hugging Face cache (the library's default when None), with sizes."""
    try:  # installed with transformers, the `draft` extra; without it no cache is read
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound
    except ImportError:
        return []
    try:
        info = scan_cache_dir(cache_dir)
    except (CacheNotFound, OSError):
        return []
    return sorted(
        (repo.repo_id, repo.size_on_disk) for repo in info.repos if repo.repo_type == "model"
    )


def past_folders(session: Session) -> list[Path]:
    """Local folders past drafting jobs loaded, those still on disk."""
    names = session.exec(select(DraftJob.model).distinct().order_by(col(DraftJob.model))).all()
    return [
        Path(n) for n in names if n.startswith(("/", "~", ".")) and Path(n).expanduser().is_dir()
    ]


def models_on_disk(
    session: Session, *, cache_dir: Path | None = None, gpu_gb: float | None
) -> list[ModelOnDisk]:
    """Every model the local engine could load without a download, the cache's first."""
    found = [
        ModelOnDisk(name, "cache", size, fits_gpu(size_bytes=size, gpu_gb=gpu_gb))
        for name, size in cached_models(cache_dir=cache_dir)
    ]
    for folder in past_folders(session):
        size = folder_weights(folder.expanduser())
        found.append(
            ModelOnDisk(str(folder), "folder", size, fits_gpu(size_bytes=size, gpu_gb=gpu_gb))
        )
    return found


def runs_on_cpu(*, engine: str, device: str | None) -> bool:
    """Whether the local engine would draft on the CPU (no CUDA GPU, or cpu asked for)."""
    if engine != "local":
        return False
    if device:
        return device.startswith("cpu")
    return not gpu.cuda_present()


def cpu_warning(settings: Settings) -> str | None:
    """The sentence every page that offers drafting shows when it would run on the CPU."""
    cpu = runs_on_cpu(engine=settings.draft_engine, device=settings.draft_device)
    return CPU_WARNING if cpu else None
