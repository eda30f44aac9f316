"""The training YAML: the guide's config (its section 5) as data, the dataset's own settings,
then the profile's changes, each with its reason as a comment."""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from app.captions.schema import Caption, Style
from app.export.caption_file import TriggerPlacement
from app.export.profiles import GUIDE_STEPS, Plan, plan, with_steps
from app.export.samples import SampleSet, default_set, prompt_text

UNCONDITIONAL_LORA = (
    "ostris/ideogram_4_unconditional_lora/ideogram_4_unconditional_lora_r16.safetensors"
)

# The guide's process, value for value; the parts a user changes (paths, trigger word, name)
# are filled from the dataset, and its UI database path is left out (only AI-Toolkit's own
# UI may write there).
GUIDE_PROCESS: dict[str, Any] = {
    "type": "diffusion_trainer",
    "training_folder": "output",
    "device": "cuda",
    "trigger_word": None,
    "performance_log_every": 10,
    "network": {
        "type": "lora",
        "linear": 16,
        "linear_alpha": 16,
        "network_kwargs": {"ignore_if_contains": []},
    },
    "save": {
        "dtype": "bf16",
        "save_every": 250,
        "max_step_saves_to_keep": 12,
        "save_format": "diffusers",
        "push_to_hub": False,
    },
    "datasets": [
        {
            "folder_path": None,
            "mask_path": None,
            "mask_min_value": 0.1,
            "default_caption": "",
            "caption_ext": "json",
            "caption_dropout_rate": 0.05,
            "cache_latents_to_disk": True,
            "is_reg": False,
            "network_weight": 1,
            "resolution": [1024],
            "controls": [],
            "shrink_video_to_frames": True,
            "num_frames": 1,
            "flip_x": False,
            "flip_y": False,
            "num_repeats": 1,
        }
    ],
    "train": {
        "batch_size": 1,
        "bypass_guidance_embedding": False,
        "steps": 2500,
        "gradient_accumulation": 1,
        "train_unet": True,
        "train_text_encoder": False,
        "gradient_checkpointing": True,
        "noise_scheduler": "flowmatch",
        "optimizer": "adamw8bit",
        "timestep_type": "linear",
        "content_or_style": "balanced",
        "optimizer_params": {"weight_decay": 0.0001},
        "unload_text_encoder": False,
        "cache_text_embeddings": True,
        "lr": 0.0001,
        "ema_config": {"use_ema": True, "ema_decay": 0.99},
        "skip_first_sample": True,
        "force_first_sample": False,
        "disable_sampling": True,
        "dtype": "bf16",
        "diff_output_preservation": False,
        "diff_output_preservation_multiplier": 1,
        "diff_output_preservation_class": "person",
        "switch_boundary_every": 1,
        "loss_type": "mse",
    },
    "logging": {"log_every": 1, "use_ui_logger": True},
    "model": {
        "name_or_path": "ideogram-ai/ideogram-4-fp8",
        "quantize": True,
        "qtype": "qfloat8",
        "quantize_te": True,
        "qtype_te": "qfloat8",
        "arch": "ideogram4",
        "low_vram": True,
        "model_kwargs": {},
        "layer_offloading": False,
        "layer_offloading_text_encoder_percent": 1,
        "layer_offloading_transformer_percent": 1,
    },
    "sample": {
        "sampler": "flowmatch",
        "sample_every": 250,
        "width": 768,
        "height": 768,
        "samples": [],
        "neg": "",
        "seed": 42,
        "walk_seed": True,
        "guidance_scale": 4,
        "sample_steps": 30,
        "num_frames": 1,
        "fps": 1,
    },
}


@dataclass(frozen=True)
class Sample:
    prompt: str  # as written for the trainer (see samples.prompt_text)
    strength: float
    seed: int


def training_config(
    *,
    plan: Plan,
    slug: str,
    folder_path: str,
    trigger_word: str | None,
    samples: list[Sample],
    sample_note: str = "",
    alpha_mask: bool = False,
    guide_dialect: bool = False,
) -> CommentedMap:
    """The YAML document as a ruamel map, comments attached.

    `config.name` is the slug: the trainer pastes it into a JSON dump of the config
    (get_config), where a quote or backslash of the dataset's own name would break it.
    """
    process = _commented(copy.deepcopy(GUIDE_PROCESS))
    _dataset_settings(process, folder_path=folder_path, trigger_word=trigger_word)
    if alpha_mask:
        _set(
            process, ("datasets", "alpha_mask"), True,
            "the kept transparency is a loss mask: transparent pixels are not trained on "
            "(the image itself is read as RGB)",
        )  # fmt: skip
    for change in plan.changes + plan.kept:
        _set(process, change.path, change.value, change.why)
    if plan.profile.quantize is False:
        process["model"].pop("qtype")
    if plan.profile.quantize_te is False:
        process["model"].pop("qtype_te")
    _samples(process["sample"], samples, sample_note)
    _set(
        process, ("train", "skip_first_sample"), False,
        "when sampling is on, step 0 (before training) is the LoRA-off reference",
    )  # fmt: skip
    config = CommentedMap(name=slug, process=[process])
    doc = CommentedMap(job="extension", config=config)
    doc["meta"] = CommentedMap(name="[name]", version="1.0")
    guide = (
        "\nForced: the captions are in the guide's dialect, with pixel [x1, y1, x2, y2] boxes; "
        "this ideogram4\ntrainer reads every bbox as 0..1000 [y_min, x_min, y_max, x_max], so "
        "every box is misplaced."
        if guide_dialect
        else ""
    )
    doc.yaml_set_start_comment(
        f"Written by Atelier for the dataset {slug!r}, profile {plan.profile.name} "
        f"(~{plan.memory_gb} GB estimated peak; {plan.steps} steps x batch {plan.batch} = "
        f"{plan.images_seen} images seen, the guide's {GUIDE_STEPS}). Edit freely; exporting again "
        f"replaces this file.{guide}"
    )
    return doc


@dataclass(frozen=True)
class Written:
    text: str
    plan: Plan
    samples: SampleSet


def write(
    *,
    slug: str,
    resolution: int,
    trigger_word: str,
    style: Style,
    captions: list[tuple[str, Caption]],
    sizes: list[tuple[int, int]],
    folder_path: str,
    profile: str,
    placement: TriggerPlacement,
    steps: int | None = None,
    sample_set: SampleSet | None = None,
    sample_seconds: float | None = None,
    alpha_mask: bool = False,
    guide_dialect: bool = False,
) -> Written:
    """The YAML text for a dataset (its captions by file name, its images' sizes as exported),
    with the plan and sample set it was written from; `sample_set` None: the default one."""
    run = plan(profile=profile, resolution=resolution, sizes=sizes)
    if steps and steps != run.steps:
        run = with_steps(run, steps)
    chosen = sample_set or default_set(captions=captions, style=style)
    word = trigger_word.strip() if placement != "none" else None
    samples = [
        Sample(prompt_text(p, placement=placement, trigger=word), strength, seed)
        for p in chosen.prompts
        for seed in chosen.seeds
        for strength in chosen.strengths
    ]
    seconds = sample_seconds or run.profile.sample_seconds
    hours = chosen.cost_seconds(saves=run.saves, sample_seconds=seconds) / 3600
    note = (
        f"The guide's validation plan (its section 7): {len(chosen.prompts)} prompts x "
        f"{len(chosen.seeds)} seeds x {len(chosen.strengths)} LoRA strengths = "
        f"{chosen.per_save} samples a save;\nat step 0 and {run.saves} saves, ~{seconds:g} s "
        f"each: about {hours:.1f} h of sampling."
    )
    doc = training_config(
        plan=run,
        slug=slug,
        # 'none' leaves it out: with a trigger_word set, the loader would prepend it.
        folder_path=folder_path,
        trigger_word=word,
        samples=samples,
        sample_note=note,
        alpha_mask=alpha_mask,
        guide_dialect=guide_dialect,
    )
    return Written(dump(doc), run, chosen)


def _dataset_settings(process: CommentedMap, *, folder_path: str, trigger_word: str | None) -> None:
    """The parts of the guide's config every user changes, and Atelier's two additions."""
    if trigger_word:
        process["trigger_word"] = trigger_word
    else:
        # With a trigger_word set, the loader would prepend it to every caption.
        process.pop("trigger_word")
    process["datasets"][0]["folder_path"] = folder_path
    model = process["model"]
    model.insert(
        list(model).index("layer_offloading"), "unconditional_lora_path", UNCONDITIONAL_LORA
    )
    model.yaml_add_eol_comment(
        "AI-Toolkit's own default for ideogram4: used only in the unconditional pass of samples",
        "unconditional_lora_path",
    )
    _set(
        process, ("sample", "walk_seed"), False,
        "each sample keeps its own seed, for comparable checkpoints",
    )  # fmt: skip
    process["train"].yaml_add_eol_comment(
        "cached once, then the text encoder is unloaded (never unload it without caching)",
        "cache_text_embeddings",
    )


def _samples(sample: CommentedMap, samples: list[Sample], note: str) -> None:
    seq = CommentedSeq(
        CommentedMap(prompt=s.prompt, network_multiplier=s.strength, seed=s.seed) for s in samples
    )
    sample["samples"] = seq
    sample.yaml_set_comment_before_after_key(
        "samples",
        before=f"{note}\nSampling is off (train.disable_sampling) as in the guide: set it to "
        "false to watch.".strip(),
        indent=8,
    )


def _set(process: CommentedMap, path: tuple[str, ...], value: Any, why: str) -> None:
    """Sets a value at `path` (a list on the way means its first item) with `why` beside it."""
    node: Any = process
    for part in path[:-1]:
        node = node[part]
        if isinstance(node, list):
            node = node[0]
    node[path[-1]] = CommentedSeq(value) if isinstance(value, list) else value
    node.yaml_add_eol_comment(why, path[-1])


def _commented(value: Any) -> Any:
    if isinstance(value, dict):
        return CommentedMap((k, _commented(v)) for k, v in value.items())
    if isinstance(value, list):
        return CommentedSeq(_commented(v) for v in value)
    return value


def dump(doc: Any) -> str:
    """The config as YAML text in which no "${" remains for the trainer to read.

    AI-Toolkit replaces "${NAME}" anywhere in the file's text by an environment variable
    before it parses the YAML (toolkit/config.py replace_env_vars_in_string; an unset one
    stops it). Every text holding a "$" (a style block's sample prompt in any trigger
    placement, a dataset's folder) is written as a double-quoted scalar with the "$" as the
    YAML escape \x24: the parsed text is unchanged. The export and the YAML a training run
    is started with are both written here.
    """
    yaml = YAML()
    yaml.width = 4096  # JSON prompts stay on one line
    yaml.indent(mapping=2, sequence=4, offset=2)
    buf = io.StringIO()
    yaml.dump(_dollars_quoted(doc), buf)
    # Every "$" is now inside a double-quoted scalar (or a comment), where \x24 is a "$".
    return buf.getvalue().replace("$", "\\x24")


def _dollars_quoted(node: Any) -> Any:
    if isinstance(node, str) and "$" in node:
        return DoubleQuotedScalarString(node)
    if isinstance(node, dict):
        for key in node:
            node[key] = _dollars_quoted(node[key])
    elif isinstance(node, list):
        for i, item in enumerate(node):
            node[i] = _dollars_quoted(item)
    return node
