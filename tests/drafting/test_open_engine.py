"""Opening the engine the settings name: the settings hold plain values, the engines' own
names and budgets are checked and derived here, as the engine opens."""

from __future__ import annotations

from typing import get_args

from app.config import Settings
from app.drafting.open_engine import draft_limits, max_new_tokens, open_engine
from app.engines.interface import ENGINE_NAMES
from app.engines.openai_engine import OpenAIEngine
from app.engines.schema import token_budget


def test_the_setting_names_the_engines_that_exist() -> None:
    # config.py imports nothing of the app, so it spells the names out: they must agree.
    assert get_args(Settings.model_fields["draft_engine"].annotation) == ENGINE_NAMES


def test_an_unset_token_budget_is_derived_as_the_engine_opens(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(_env_file=None, data_dir=tmp_path, draft_engine="openai")  # type: ignore[call-arg]
    assert settings.draft_max_new_tokens == 0  # the setting stays what the user set
    engine = open_engine(settings)
    assert isinstance(engine, OpenAIEngine)
    try:
        budget = token_budget(draft_limits(settings))
        assert engine.max_new_tokens == max_new_tokens(settings) == budget > 1024
    finally:
        engine.close()
    fixed = settings.model_copy(update={"draft_max_new_tokens": 700})
    assert max_new_tokens(fixed) == 700
