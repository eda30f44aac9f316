"""Opens the drafting engine that the settings (or a job's choices) name, loaded and ready."""

from __future__ import annotations

from app.config import Settings
from app.drafting.available import guess_convention
from app.drafting.engine import Engine, engine_name
from app.drafting.openai_engine import OpenAIEngine
from app.drafting.schema import DraftLimits, token_budget


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
    limits = DraftLimits.scaled(
        max_chars=settings.draft_max_chars, max_elements=settings.draft_max_elements
    )
    # The bounds decide how long a caption can be; 0 derives the budget from them.
    max_new_tokens = settings.draft_max_new_tokens or token_budget(limits)
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
            max_new_tokens=max_new_tokens,
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
    from app.drafting.local.engine import LocalEngine

    return LocalEngine.load(
        model_id,
        device=settings.draft_device,
        batch_size=batch,
        max_pixels=settings.draft_max_pixels,
        max_new_tokens=max_new_tokens,
        limits=limits,
        allow_download=settings.draft_allow_download,
        compile_step=settings.draft_compile,
        cache_dir=settings.cache_dir,
    )
