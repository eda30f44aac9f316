"""The one place Atelier reads its configuration (environment variables ATELIER_*)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATELIER_", extra="ignore")

    data_dir: Path = Path("atelier-data")
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None

    # Refusal limits for imported files; both are deliberate, not Pillow's defaults.
    max_file_mb: int = Field(default=200, ge=1)
    max_image_pixels: int = Field(default=150_000_000, ge=1)

    near_duplicate_distance: int = Field(default=6, ge=0, le=32)
    import_workers: int = Field(default=0, ge=0, description="0 means one per CPU core")
    thumb_size: int = Field(default=384, ge=32, le=2048)
    page_size: int = Field(default=120, ge=1, le=1000)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "atelier.db"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    @property
    def thumbs_dir(self) -> Path:
        return self.data_dir / "thumbs"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_mb * 1024 * 1024

    @cached_property
    def is_exposed(self) -> bool:
        return is_exposed_host(self.host)

    def prepare_dirs(self) -> None:
        for d in (self.data_dir, self.store_dir, self.thumbs_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)


def is_exposed_host(host: str) -> bool:
    """True when binding `host` makes the app reachable from other machines."""
    return not (host in LOOPBACK_HOSTS or host.startswith("127."))
