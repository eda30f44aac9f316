"""The drafting engine chosen on the drafting card, and whether it can draft right now.

The choice is one for the whole app, stored in the database (one row), not per dataset: it
names what this machine has (a model on its disk, a server on its network), which is the
same for every dataset, and a user setting up a server once expects every dataset to use
it. A job records the engine, model and server it ran with, so a dataset's history still
says which drafted what. Until a choice is made, the settings (ATELIER_DRAFT_*) decide;
"back to the settings" deletes the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from sqlmodel import Session

from app.config import Settings
from app.drafting import available
from app.engines.interface import DraftError, EngineName, engine_name
from app.engines.openai_engine import list_models, split_urls
from app.errors import Invalid
from app.models import DraftChoice, utcnow

CHOICE_ID = 1
SERVER_CHECK_S = 3.0  # a server that does not list its models in this long is reported


@dataclass(frozen=True)
class Chosen:
    engine: EngineName
    model: str
    base_url: str  # the openai engine's server(s); the settings' for the local engine
    from_page: bool  # chosen on the card (else the settings')

    def as_dict(self) -> dict:
        return {
            "engine": self.engine,
            "model": self.model,
            "base_url": self.base_url if self.engine == "openai" else None,
            "from_page": self.from_page,
        }


@dataclass(frozen=True)
class Readiness:
    """Whether the chosen engine can draft now; `sentence` says where it runs, or what to do."""

    ready: bool
    sentence: str
    found: available.ModelOnDisk | None = None  # the local model, where it is on disk


def current(session: Session, settings: Settings) -> Chosen:
    """The engine drafting uses now: the card's choice, else the settings'."""
    row = session.get(DraftChoice, CHOICE_ID)
    if row is None:
        return Chosen(
            settings.draft_engine, settings.draft_model, settings.draft_base_url, from_page=False
        )
    try:
        engine = engine_name(row.engine)
    except DraftError:  # a name a later version no longer knows: the settings decide
        return Chosen(
            settings.draft_engine, settings.draft_model, settings.draft_base_url, from_page=False
        )
    return Chosen(engine, row.model, row.base_url or settings.draft_base_url, from_page=True)


def normalise_url(value: str) -> str:
    """A server address as typed (`localhost:11434`, `http://127.0.0.1:1234`) as the base URL
    of its OpenAI-compatible API (`http://127.0.0.1:1234/v1`); several stay comma-separated."""
    out = []
    for raw in value.replace(",", " ").split():
        url = raw if "://" in raw else f"http://{raw}"
        parts = urlsplit(url)
        path = parts.path.rstrip("/") or "/v1"
        out.append(urlunsplit((parts.scheme, parts.netloc, path, "", "")))
    try:
        return ",".join(split_urls(",".join(out)))
    except DraftError as e:
        raise Invalid(e.message.replace("in ATELIER_DRAFT_BASE_URL ", "")) from None


def validate(
    *, settings: Settings, engine: str, model: str, base_url: str | None
) -> tuple[EngineName, str, str | None]:
    """The choice as stored; Invalid with a sentence for one that cannot work as given."""
    try:
        kind = engine_name(engine)
    except DraftError as e:
        raise Invalid(e.message) from None
    model = model.strip()
    if not model:
        raise Invalid(
            "Name the model: a Hugging Face id, a folder, or the name the server lists."
            if kind == "local"
            else "Name the model the server should draft with (as its /v1/models lists it)."
        )
    if len(model) > 500:
        raise Invalid("A model name is at most 500 characters.")
    locked = settings.is_exposed or bool(settings.token)
    if kind == "openai":
        url = normalise_url(base_url or settings.draft_base_url)
        # As with the trainer's program: a request that names what the server calls is the
        # settings' business once Atelier is reachable with a token (no probing the network
        # behind it through the drafting card).
        if locked and url != normalise_url(settings.draft_base_url):
            raise Invalid(
                "Naming a drafting server on the page is off while Atelier is reachable with a "
                "token; set ATELIER_DRAFT_BASE_URL instead (its models can be chosen here)."
            )
        return kind, model, url
    if available.is_folder_name(model):
        if locked:
            raise Invalid(
                "Loading a model from a folder named on the page is off while Atelier is "
                "reachable with a token; set ATELIER_DRAFT_MODEL to the folder instead."
            )
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise Invalid(f"There is no folder {model}.")
        if not (folder / "config.json").is_file():
            raise Invalid(
                f"{model} holds no config.json: choose the folder of a saved model (the one "
                "with config.json and the .safetensors files)."
            )
    return kind, model, None


def choose(
    session: Session, *, settings: Settings, engine: str, model: str, base_url: str | None = None
) -> Chosen:
    """Stores the card's choice for the whole app; Invalid says what is wrong with it."""
    kind, name, url = validate(settings=settings, engine=engine, model=model, base_url=base_url)
    row = session.get(DraftChoice, CHOICE_ID) or DraftChoice(id=CHOICE_ID, engine=kind, model=name)
    row.engine, row.model, row.base_url, row.updated_at = kind, name, url, utcnow()
    session.add(row)
    session.commit()
    return current(session, settings)


def reset(session: Session) -> None:
    """Forgets the card's choice: the settings decide again."""
    row = session.get(DraftChoice, CHOICE_ID)
    if row is not None:
        session.delete(row)
        session.commit()


def check(
    chosen: Chosen,
    *,
    settings: Settings,
    on_disk: list[available.ModelOnDisk],
    api_key: str | None = None,
) -> Readiness:
    """Whether `chosen` can draft now, without loading anything: the local model on this
    machine (or downloads allowed), or the server answering and listing the model."""
    if chosen.engine == "openai":
        return _check_servers(chosen, api_key=api_key)
    found = available.locate(chosen.model, on_disk)
    if found is not None and found.complete:
        where = "in the Hugging Face cache" if found.where == "cache" else "in its folder"
        return Readiness(True, f"{chosen.model} is on this machine ({where}).", found)
    if available.is_folder_name(chosen.model):
        return Readiness(
            False,
            f"{chosen.model} holds no model weights (.safetensors): choose another model.",
            found,
        )
    if settings.draft_allow_download:
        return Readiness(
            True,
            f"{chosen.model} is not on this machine: the first job downloads it "
            "(ATELIER_DRAFT_ALLOW_DOWNLOAD is on).",
        )
    return Readiness(
        False,
        f"{chosen.model} is not on this machine (not in the Hugging Face cache at "
        f"{available.hf_cache_dir()}), and Atelier downloads nothing on its own. Fetch it once "
        f"with: hf download {chosen.model}; or choose a model this machine has, or a server.",
    )


def _check_servers(chosen: Chosen, *, api_key: str | None) -> Readiness:
    try:
        urls = split_urls(chosen.base_url)
    except DraftError as e:
        return Readiness(False, e.message)
    answers = list_models(urls, api_key=api_key, timeout_s=SERVER_CHECK_S)
    reachable = [(url, models) for url, models, error in answers if error is None]
    if not reachable:
        url, _, error = answers[0]
        return Readiness(
            False,
            f"The drafting server at {url} {error}. Start it (Ollama, LM Studio, vLLM), or "
            "correct its address on the dataset page's drafting card.",
        )
    serving = [url for url, models in reachable if chosen.model in models or not models]
    if not serving:
        url, models = reachable[0]
        listed = ", ".join(models[:8]) + (" …" if len(models) > 8 else "")
        return Readiness(
            False,
            f"The server at {url} does not serve {chosen.model}; it lists {listed}. Choose one "
            "of those on the drafting card.",
        )
    return Readiness(True, f"The server answers and serves {chosen.model}.")
