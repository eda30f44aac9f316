"""The sample set: the guide's validation plan (its section 7) made from the dataset's own
captions, and each sample prompt written so that the trainer reads it whole.

Facts (docs/trainer.md sections 3 and 7; AI-Toolkit 27a03a91):
jobs/process/BaseSDTrainProcess.py `sample`
replaces [trigger] in each prompt by the word (never prepending it), then
toolkit/config_modules.py `GenerateImageConfig._process_prompt_string` splits the prompt on
'--' and keeps only the first part as the prompt, reading the rest as --flags. The ideogram4
model parses a prompt starting with '{' as JSON (json.loads), so inside JSON a '-' can be
written as the escape \\u002d, which reaches the text encoder as '-'. The step-0 samples,
taken before any training, are the LoRA-off reference: toolkit/lora_special.py initialises
every lora_up weight to zero, so the untrained LoRA adds nothing at any strength.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlmodel import Session

from app.captions.boxes import Box
from app.captions.dialects import to_trainer
from app.captions.schema import Caption, Composition, Element, Style
from app.errors import Invalid
from app.export.caption_file import PLACEHOLDER, TriggerPlacement, with_placeholder
from app.models import Dataset

SEEDS = (42, 43, 44)
STRENGTHS = (0.5, 0.75, 1.0)
KINDS = (
    "close-up portrait",
    "half-length",
    "multi-figure composition",
    "a subject the dataset never holds",
    "on-image text",
    "simple",
    "complex",
)
# A '-' next to another one: escaped, so that no '--' reaches the trainer's prompt parser.
_DASHES = re.compile(r"-(?=-)|(?<=-)-")


@dataclass(frozen=True)
class SamplePrompt:
    kind: str
    data: dict[str, Any]  # the caption in the trainer's JSON shape, without the trigger
    source: str | None = None  # the image whose caption it was made from

    @property
    def text(self) -> str:
        return json.dumps(self.data, ensure_ascii=False, indent=1)


@dataclass(frozen=True)
class SampleSet:
    prompts: list[SamplePrompt]
    seeds: tuple[int, ...] = SEEDS
    strengths: tuple[float, ...] = STRENGTHS
    # As edited: every prompt in the editor's order with its tick, the unticked ones kept for
    # the editor but never written to the YAML. Empty: the prompts above, all ticked.
    edited: list[tuple[SamplePrompt, bool]] = field(default_factory=list)

    @property
    def rows(self) -> list[tuple[SamplePrompt, bool]]:
        return self.edited or [(p, True) for p in self.prompts]

    @property
    def per_save(self) -> int:
        return len(self.prompts) * len(self.seeds) * len(self.strengths)

    def cost_seconds(self, *, saves: int, sample_seconds: float) -> float:
        """Sampling time of a run: every sample at step 0 (the reference) and at each save."""
        return self.per_save * (saves + 1) * sample_seconds


def default_set(*, captions: Sequence[tuple[str, Caption]], style: Style) -> SampleSet:
    """The guide's validation plan, each kind from the dataset's best-fitting caption."""
    picked: dict[str, SamplePrompt] = {}
    used: set[str] = set()

    def take(kind: str, ranked: list[tuple[float, str, Caption]]) -> None:
        for _, name, cap in sorted(ranked, key=lambda r: -r[0]):
            if name not in used:
                used.add(name)
                picked[kind] = SamplePrompt(kind, to_trainer(cap), name)
                return

    objs = [(n, c, [e for e in c.composition.elements if e.type == "obj"]) for n, c in captions]
    texts = [(n, c) for n, c in captions if any(e.type == "text" for e in c.composition.elements)]
    take("on-image text", [(_length(c), n, c) for n, c in texts])
    take(
        "close-up portrait",
        [(_largest(es) + _said(c, "portrait", "face", "head"), n, c) for n, c, es in objs
         if 0 < len(es) <= 2 and _largest(es) >= 0.35],
    )  # fmt: skip
    take(
        "half-length",
        [(_said(c, "half-length", "half length", "waist") - abs(_largest(es) - 0.45), n, c)
         for n, c, es in objs if es],
    )  # fmt: skip
    take("multi-figure composition", [(len(es), n, c) for n, c, es in objs if len(es) >= 3])
    take("complex", [(_length(c), n, c) for n, c in captions])
    take("simple", [(-_length(c), n, c) for n, c in captions])
    if not (style.medium and style.render) and captions:
        # No dataset style block: the style its captions hold most often.
        styles = Counter(c.style.model_copy(update={"color_palette": []}) .model_dump_json()
                         for _, c in captions)  # fmt: skip
        style = Style.model_validate_json(styles.most_common(1)[0][0])
    written = dict(_written(style, captions))
    prompts = [picked.get(k) or written.get(k) for k in KINDS]
    return SampleSet([p for p in prompts if p is not None])


def _largest(elements: list[Element]) -> float:
    return max((_area(e.box) for e in elements if e.box is not None), default=0.0)


def _area(box: Box) -> float:
    return (box.x1 - box.x0) * (box.y1 - box.y0)


def _length(caption: Caption) -> float:
    return float(len(json.dumps(to_trainer(caption))))


def _said(caption: Caption, *words: str) -> float:
    text = json.dumps(to_trainer(caption)).lower()
    return 1.0 if any(w in text for w in words) else 0.0


def _written(
    style: Style, captions: Sequence[tuple[str, Caption]]
) -> list[tuple[str, SamplePrompt]]:
    """Prompts written in the dataset's style, for the kinds no caption of it fits."""
    complete = bool(style.medium and style.render)
    base = style.model_copy(update={"color_palette": []}) if complete else Style()
    held = " ".join(json.dumps(to_trainer(c)).lower() for _, c in captions)
    outside = (
        ("A red vintage motorcycle parked in a narrow street at night.",
         "a narrow cobbled street with closed shutters", "a red vintage motorcycle")
        if "motorcycle" not in held
        else ("A lighthouse on a cliff above a stormy sea.", "a stormy sea under low clouds",
              "a white lighthouse on a dark cliff")
    )  # fmt: skip

    def prompt(kind: str, hld: str, background: str, elements: list[Element]) -> SamplePrompt:
        cap = Caption(
            high_level_description=hld,
            style=base,
            composition=Composition(background=background, elements=elements),
        )
        return SamplePrompt(kind, to_trainer(cap))

    return [
        ("close-up portrait", prompt(
            "close-up portrait", "A close-up portrait of an old woman looking to the side.",
            "plain dark ground",
            [Element(box=Box(0.2, 0.1, 0.8, 0.95), desc="an old woman's head and shoulders")],
        )),
        ("half-length", prompt(
            "half-length", "A half-length figure of a young musician holding a lute.",
            "a dim interior",
            [Element(box=Box(0.15, 0.1, 0.85, 1.0), desc="a young man in a loose white shirt"),
             Element(box=Box(0.3, 0.55, 0.8, 0.9), desc="a lute held across his chest")],
        )),
        ("multi-figure composition", prompt(
            "multi-figure composition", "Three card players around a table, one of them cheating.",
            "a tavern wall fading into darkness",
            [Element(box=Box(0.0, 0.2, 0.35, 1.0), desc="a card player leaning in"),
             Element(box=Box(0.35, 0.15, 0.65, 1.0), desc="a card player holding his cards"),
             Element(box=Box(0.65, 0.2, 1.0, 1.0), desc="a card player hiding a card")],
        )),
        ("a subject the dataset never holds", prompt(
            "a subject the dataset never holds", outside[0], outside[1],
            [Element(box=Box(0.15, 0.35, 0.9, 0.95), desc=outside[2])],
        )),
        ("on-image text", prompt(
            "on-image text", "A shop sign hanging above a doorway.", "a stone wall",
            [Element(type="text", box=Box(0.2, 0.2, 0.8, 0.45), text="THE GOLDEN LAMP",
                     desc="painted capital letters on a wooden sign")],
        )),
        ("simple", prompt(
            "simple", "A pear on a table.", "a dark ground",
            [Element(box=Box(0.35, 0.35, 0.65, 0.75), desc="a ripe pear")],
        )),
        ("complex", prompt(
            "complex", "A crowded market at dusk: a fishmonger shouting, a child stealing an "
            "apple, two women bargaining over a basket of eels.", "market stalls under awnings",
            [Element(box=Box(0.0, 0.2, 0.3, 1.0), desc="a fishmonger with raised arm"),
             Element(box=Box(0.3, 0.5, 0.45, 1.0), desc="a child reaching for an apple"),
             Element(box=Box(0.5, 0.25, 0.75, 1.0), desc="a woman holding a basket of eels"),
             Element(box=Box(0.75, 0.25, 1.0, 1.0), desc="a woman counting coins")],
        )),
    ]  # fmt: skip


def parse_prompt(kind: str, text: str) -> SamplePrompt:
    """A sample prompt the user edited: a structured caption as JSON, or a sentence why not."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise Invalid(f"The sample prompt {kind!r} is not JSON: {e}.") from None
    except RecursionError:
        raise Invalid(f"The sample prompt {kind!r} is nested too deeply to be a caption.") from None
    if not isinstance(data, dict) or not isinstance(data.get("compositional_deconstruction"), dict):
        raise Invalid(
            f"The sample prompt {kind!r} is not a structured caption: it needs a "
            '"compositional_deconstruction" object, or the model reads it as plain text.'
        )
    return SamplePrompt(kind, data)


def prompt_text(prompt: SamplePrompt, *, placement: TriggerPlacement, trigger: str | None) -> str:
    """The prompt as written in the YAML, read whole by the trainer (or a sentence why not).

    Aesthetics placement writes [trigger] where the training captions hold it, unless the word
    itself holds '--': then the word is written in, escaped. Prefix placement writes the text
    a prefixed training caption becomes (commas gain a space, the word in front): plain text,
    where no '--' can be escaped, so a prompt that would hold one is refused.
    """
    data = prompt.data
    if placement == "prefix":
        text = ", ".join(_compact(data).split(","))
        if "--" in text or (trigger and "--" in trigger):
            where = "the trigger word" if trigger and "--" in trigger else "its text"
            raise Invalid(
                f"The sample prompt {prompt.kind!r} would hold '--' ({where}): with the trigger "
                "prefixed, sample prompts are plain text and the trainer cuts each at '--', "
                "reading the rest as options such as --w or --seed. Reword it, or place the "
                "trigger in aesthetics, where the export escapes it."
            )
        return f"{PLACEHOLDER} {text}"
    if placement == "aesthetics":
        data = with_placeholder(data)
    text = _compact(data)
    if placement == "aesthetics" and trigger and "--" in trigger:
        text = text.replace(PLACEHOLDER, json.dumps(trigger, ensure_ascii=False)[1:-1])
    # "$" as its escape too: the trainer reads "${X}" anywhere in the YAML as an environment
    # variable; the model reads "\u0024" back as "$".
    return _DASHES.sub(r"\\u002d", text).replace("$", "\\u0024")


def _compact(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def parse_set(
    *,
    kinds: Sequence[str],
    texts: Sequence[str],
    included: Sequence[int],
    seeds: str,
    strengths: str,
    sources: Sequence[str] = (),
) -> SampleSet:
    """The sample set as the user edited it, or a sentence saying what is wrong."""
    if len(kinds) != len(texts):
        raise Invalid("The sample set came incomplete: reload the page and edit it again.")
    named = list(sources) + [""] * len(kinds)
    rows = [
        (replace(parse_prompt(kind, text), source=named[n] or None), n in set(included))
        for n, (kind, text) in enumerate(zip(kinds, texts, strict=True))
    ]
    prompts = [p for p, on in rows if on]
    try:
        seed_list = tuple(int(s) for s in seeds.replace(",", " ").split())
    except ValueError:
        raise Invalid(f"The sample seeds {seeds!r} are not whole numbers.") from None
    try:
        strength_list = tuple(float(s) for s in strengths.replace(",", " ").split())
    except ValueError:
        raise Invalid(f"The LoRA strengths {strengths!r} are not numbers.") from None
    if not seed_list or not strength_list:
        raise Invalid("The sample set needs at least one seed and one LoRA strength.")
    if any(not 0 <= s <= 2 for s in strength_list):
        raise Invalid("LoRA strengths go from 0 (the LoRA off) to 2.")
    return SampleSet(prompts, seed_list, strength_list, rows)


# The set stored with a dataset (Dataset.sample_set): JSON text, every prompt in the editor's
# order with whether it is ticked, so that an unticked prompt is not lost either.


def dump_set(sample_set: SampleSet, *, seconds: float | None) -> str:
    return json.dumps(
        {
            "prompts": [
                {"kind": p.kind, "prompt": p.data, "source": p.source, "on": on}
                for p, on in sample_set.rows
            ],
            "seeds": list(sample_set.seeds),
            "strengths": list(sample_set.strengths),
            "seconds": seconds,
        },
        ensure_ascii=False,
    )


def load_set(value: Any) -> tuple[SampleSet, float | None]:
    """A sample set from its stored (or sent) shape, or a sentence saying what is wrong."""
    if not isinstance(value, dict):
        raise Invalid("A sample set is an object with prompts, seeds and strengths.")
    rows = value.get("prompts")
    if not isinstance(rows, list):
        raise Invalid("The sample set needs a list of prompts (an empty list for none).")
    kinds, texts, included, sources = [], [], [], []
    for n, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("kind"), str) or not row["kind"]:
            raise Invalid(f"Sample prompt {n + 1} needs a kind (a name) and a prompt.")
        prompt = row.get("prompt")
        kinds.append(row["kind"])
        texts.append(prompt if isinstance(prompt, str) else json.dumps(prompt))
        sources.append(row.get("source") or "")
        if row.get("on", True) is not False:
            included.append(n)
    seeds, strengths = value.get("seeds", list(SEEDS)), value.get("strengths", list(STRENGTHS))
    if not isinstance(seeds, list) or not isinstance(strengths, list):
        raise Invalid("The sample seeds and LoRA strengths are lists of numbers.")
    if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise Invalid(f"The sample seeds {seeds!r} are not whole numbers.")
    if any(isinstance(s, bool) or not isinstance(s, int | float) for s in strengths):
        raise Invalid(f"The LoRA strengths {strengths!r} are not numbers.")
    parsed = parse_set(
        kinds=kinds, texts=texts, included=included, sources=sources,
        seeds=" ".join(str(s) for s in seeds), strengths=" ".join(str(s) for s in strengths),
    )  # fmt: skip
    seconds = value.get("seconds")
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= 3600
    ):
        raise Invalid("Seconds a sample must be a number above 0 and at most 3600 (or null).")
    return parsed, float(seconds) if seconds is not None else None


def stored_set(dataset: Dataset) -> tuple[SampleSet, float | None] | None:
    """The sample set saved with the dataset; None: the default plan applies."""
    if not dataset.sample_set:
        return None
    return load_set(json.loads(dataset.sample_set))


def save_set(
    session: Session, *, dataset: Dataset, sample_set: SampleSet, seconds: float | None
) -> None:
    dataset.sample_set = dump_set(sample_set, seconds=seconds)
    session.add(dataset)
    session.commit()


def clear_set(session: Session, *, dataset: Dataset) -> None:
    """Back to the default plan, made afresh from the captions at each export."""
    dataset.sample_set = None
    session.add(dataset)
    session.commit()


def same_set(a: SampleSet, b: SampleSet) -> bool:
    """Whether two sets write the same samples and keep the same unticked prompts."""

    def key(s: SampleSet) -> Any:
        rows = [(p.kind, p.data, on) for p, on in s.rows]
        return rows, list(s.seeds), [float(x) for x in s.strengths]

    return bool(key(a) == key(b))
