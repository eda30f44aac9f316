"""The one place Atelier reads its configuration (environment variables ATELIER_*)."""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Never handed to a program Atelier starts (the drafting process gets its settings, less the
# token, on its stdin; the trainer needs neither).
SECRET_VARIABLES = ("ATELIER_TOKEN", "ATELIER_DRAFT_API_KEY")


def child_environment(**extra: str) -> dict[str, str]:
    """This process's environment for a program it starts, without Atelier's secrets."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in SECRET_VARIABLES}
    return env | extra


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATELIER_", extra="ignore")

    data_dir: Path = Path("atelier-data")
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    # A file holding the token (its first line), so that it never shows in the process list
    # as a command-line argument would; read when `token` is not given.
    token_file: Path | None = None
    # Host names (besides 127.0.0.1, localhost and [::1]) a loopback Atelier without a token
    # answers to, comma-separated: a page of another name reaching it through DNS rebinding
    # is refused before any route runs.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Folders exports may be written under. Unset: anywhere on this machine when bound to
    # loopback; only <data_dir>/exports when exposed on a network (token mode).
    export_roots: list[Path] | None = None

    # Refusal limits for imported files; both are deliberate, not Pillow's defaults.
    max_file_mb: int = Field(default=200, ge=1)
    # One upload request (a batch of files): refused before reading when it says it is larger,
    # and cut off the moment it passes this, whatever it said.
    max_upload_mb: int = Field(default=2048, ge=1)
    max_image_pixels: int = Field(default=150_000_000, ge=1)

    near_duplicate_distance: int = Field(default=6, ge=0, le=32)
    import_workers: int = Field(default=0, ge=0, description="0 means one per CPU core")
    thumb_size: int = Field(default=384, ge=32, le=2048)
    page_size: int = Field(default=120, ge=1, le=1000)

    # Drafting captions (app/drafting/). The local engine loads `draft_model` from the
    # Hugging Face cache or a local folder; the openai engine calls any OpenAI-compatible
    # server (vLLM, SGLang, Ollama, LM Studio, a hosted API).
    # The engines' names (app/engines/interface.py EngineName, which a test holds equal).
    draft_engine: Literal["local", "openai"] = "local"
    draft_model: str = "Qwen/Qwen2-VL-7B-Instruct"
    # Images drafted at once. 0: the local engine chooses from the GPU's memory (a short
    # first batch, measured, then the largest power of two that fits, up to 128).
    draft_batch: int = Field(default=0, ge=0, le=256)
    # Unset or 0: derived from the bounds below as the engine opens, enough for a caption that
    # fills them (app/drafting/open_engine.py; about 2,500 at the defaults).
    draft_max_new_tokens: int = Field(default=0, ge=0, le=32768)
    # torch.compile the local engine's decode step: about 10% faster at batch 32 on an H100,
    # after 30-40 s of compiling for each batch size (bench/results/*compiled*).
    draft_compile: bool = False
    # Bounds on a draft, enforced by the grammar: characters of a description field, elements.
    draft_max_chars: int = Field(default=240, ge=8, le=2000)
    draft_max_elements: int = Field(default=10, ge=1, le=40)
    draft_max_pixels: int = Field(
        default=1024 * 1024, ge=28 * 28 * 4, description="Pixels of the image the model sees"
    )
    draft_device: str | None = Field(
        default=None, description="cuda, cuda:1, cpu; default: cuda if any"
    )
    # Model weights are read from the Hugging Face cache or a folder; Atelier downloads them
    # only when this is set.
    draft_allow_download: bool = False
    # One server, or several separated by commas (drafted at their combined speed).
    draft_base_url: str = "http://127.0.0.1:8001/v1"
    # Requests each server is sent at once. 0: learnt from its first answers' latency.
    draft_in_flight: int = Field(default=0, ge=0, le=256)
    # How the server reads a schema's pattern (app/engines/schema.py); auto: decoded for
    # api.openai.com, raw elsewhere. The token and temperature parameters are adapted when
    # a server refuses them; these fix them instead (temperature "none": the model's default).
    draft_schema_escapes: Literal["auto", "raw", "decoded"] = "auto"
    draft_token_param: Literal["auto", "max_tokens", "max_completion_tokens"] = "auto"
    draft_temperature: float | Literal["none"] = Field(default=0.0)
    draft_api_key: str | None = None
    draft_box_convention: Literal["qwen2vl", "qwen25vl", "qwen3vl", "official"] | None = Field(
        default=None,
        description="How the remote model writes boxes; the local engine knows its own",
    )
    draft_timeout_s: float = Field(default=300.0, gt=0)
    # The drafting process keeps its model loaded this long after its last job, so a re-draft
    # is quick, then exits and gives the (GPU) memory back, to training for instance.
    draft_idle_exit_s: float = Field(default=600.0, ge=0)

    # Training (app/training/): the user's AI-Toolkit checkout, and the Python that runs it
    # (unset: the checkout's venv/bin/python or .venv/bin/python).
    aitk_dir: Path | None = None
    aitk_python: Path | None = None
    # After a stop (SIGINT, as Ctrl+C) the trainer gets this long to exit before it is killed.
    train_stop_grace_s: float = Field(default=20.0, ge=0)

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            return [str(v).strip().lower() for v in value if str(v).strip()]
        return value

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        if self.token is None and self.token_file is not None:
            try:
                lines = self.token_file.expanduser().read_text().splitlines()
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(f"cannot read the token file {self.token_file}: {e}") from None
            self.token = lines[0].strip() if lines else ""
        return self

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
    def cache_dir(self) -> Path:
        """What the drafting engine's first start computes, kept for the next (the grammar)."""
        return self.data_dir / "cache"

    @property
    def training_dir(self) -> Path:
        """Training logs and the run thumbnails' cache."""
        return self.data_dir / "training"

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_mb * 1024 * 1024

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @cached_property
    def is_exposed(self) -> bool:
        """True when the exposed mode's rules apply: bound to a network address, or given a
        token (a loopback Atelier behind a reverse proxy or an SSH tunnel is as reachable)."""
        return is_exposed_host(self.host) or bool(self.token)

    def prepare_dirs(self) -> None:
        for d in (self.data_dir, self.store_dir, self.thumbs_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)


def is_exposed_host(host: str) -> bool:
    """True when binding `host` makes the app reachable from other machines."""
    return not is_loopback_name(host)


def is_loopback_name(name: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1); a name that merely
    starts with "127." (127.attacker.example) is not one."""
    name = name.lower().removeprefix("[").removesuffix("]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
