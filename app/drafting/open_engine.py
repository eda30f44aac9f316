"""Opens the drafting engine that the settings (or a job's choices) name, loaded and ready."""

from __future__ import annotations

from app.config import Settings
from app.drafting.available import guess_convention
from app.engines.interface import Engine, engine_name
from app.engines.openai_engine import OpenAIEngine
from app.engines.schema import DraftLimits, token_budget


def draft_limits(settings: Settings) -> DraftLimits:
    """The bounds on a draft the settings ask for."""
    return DraftLimits.scaled(
        max_chars=settings.draft_max_chars, max_elements=settings.draft_max_elements
    )


def max_new_tokens(settings: Settings) -> int:
    """The tokens a draft may take: the setting, or (0) enough for a caption at the bounds."""
    return settings.draft_max_new_tokens or token_budget(draft_limits(settings))


def open_engine(
    settings: Settings,
    *,
    engine: str | None = None,
    model: str | None = None,
    batch_size: int | None = None,
    base_url: str | None = None,
) -> Engine:
    """The engine the settings (or the caller's choices) describe, loaded and ready."""
    kind = engine_name(engine or settings.draft_engine)
    model_id = model or settings.draft_model
    batch = batch_size or settings.draft_batch
    limits = draft_limits(settings)
    if kind == "openai":
        temperature = settings.draft_temperature
        return OpenAIEngine(
            base_url=base_url or settings.draft_base_url,
            model=model_id,
            api_key=settings.draft_api_key,
            # Unset: read from the model's name as the server spells it (qwen2.5vl:7b).
            convention=settings.draft_box_convention or guess_convention(model_id),
            batch_size=batch,  # 0: twice what the servers take at once
            in_flight=settings.draft_in_flight,
            max_new_tokens=max_new_tokens(settings),
            timeout_s=settings.draft_timeout_s,
            limits=limits,
            escapes=None
            if settings.draft_schema_escapes == "auto"
            else settings.draft_schema_escapes,
            token_param=None
            if settings.draft_token_param == "auto"
            else settings.draft_token_param,
            temperature=None if temperature == "none" else float(temperature),
        )
    from app.engines.local.engine import LocalEngine

    return LocalEngine.load(
        model_id,
        device=settings.draft_device,
        batch_size=batch,
        max_pixels=settings.draft_max_pixels,
        max_new_tokens=max_new_tokens(settings),
        limits=limits,
        allow_download=settings.draft_allow_download,
        compile_step=settings.draft_compile,
        cache_dir=settings.cache_dir,
    )
