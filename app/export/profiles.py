"""The AI-Toolkit training YAML: the guide's 24 GB config as the baseline, and one profile
per GPU memory size whose every change from the baseline carries a comment saying why.

Facts (FORMAT.md section 6): the Ideogram 4 transformer is ~17 GB in bf16 and ~9 GB in fp8;
with cache_text_embeddings the text encoder is unloaded after caching, so its memory is free
while training; layer_offloading is the lever below 24 GB.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from app.captions.boxes import Box
from app.captions.dialects import to_trainer
from app.captions.schema import Caption, Composition, Element, Style
from app.errors import Invalid

PROFILES = ("12gb", "16gb", "24gb", "32gb", "48gb", "80gb", "96gb")
DEFAULT_PROFILE = "24gb"
TRANSFORMER_GB = {"bf16": 17.0, "fp8": 9.0}
UNCONDITIONAL_LORA = (
    "ostris/ideogram_4_unconditional_lora/ideogram_4_unconditional_lora_r16.safetensors"
)


@dataclass(frozen=True)
class Profile:
    name: str
    gpu_gb: int
    quantize: bool = True
    quantize_te: bool = True
    low_vram: bool = True
    offload: float = 0.0  # share of transformer layers kept in CPU memory
    rank: int = 16
    batch: int = 1
    multires: bool = False
    max_resolution: int | None = None
    why: dict[str, str] = field(default_factory=dict)

    def resolutions(self, resolution: int) -> list[int]:
        """The training resolutions this profile writes for a dataset trained at `resolution`."""
        res = min(resolution, self.max_resolution or resolution)
        return [r for r in (512, 768, 1024) if r <= res] if self.multires else [res]

    def vram_estimate_gb(self, resolution: int) -> float:
        """A rough peak: weights on the GPU, LoRA and optimizer, activations, CUDA overhead."""
        weights = TRANSFORMER_GB["fp8" if self.quantize else "bf16"] * (1 - self.offload)
        lora = 0.6 if self.rank <= 16 else 1.2
        res = min(resolution, self.max_resolution or resolution)
        activations = 2.6 * self.batch * (res / 1024) ** 2 * (0.8 if self.low_vram else 1.0)
        return round(weights + lora + activations + 3.5, 1)


_PROFILES = {
    "12gb": Profile(
        "12gb",
        12,
        offload=0.6,
        max_resolution=768,
        why={
            "layer_offloading": "12 GB cannot hold the 9 GB fp8 transformer and its "
            "activations: 60% of its layers wait in CPU memory (slower, but it fits)",
            "resolution": "768 px at most: 1024 px activations do not fit beside the weights",
        },
    ),
    "16gb": Profile(
        "16gb",
        16,
        offload=0.3,
        why={
            "layer_offloading": "16 GB is tight for 1024 px: 30% of the transformer's "
            "layers wait in CPU memory"
        },
    ),
    "24gb": Profile("24gb", 24),
    "32gb": Profile(
        "32gb",
        32,
        low_vram=False,
        why={
            "low_vram": "32 GB holds the fp8 transformer and 1024 px activations at once; "
            "low_vram only slows the run"
        },
    ),
    "48gb": Profile(
        "48gb",
        48,
        quantize=False,
        low_vram=False,
        rank=32,
        batch=2,
        multires=True,
        why={
            "quantize": "the bf16 transformer (~17 GB) fits: no fp8 rounding of the weights",
            "low_vram": "not needed with 48 GB",
            "linear": "rank 32 captures a complex style better, and the memory allows it",
            "batch_size": "two images a step: steadier gradients, faster epochs",
            "resolution": "512/768/1024 buckets make the style hold at every scale",
        },
    ),
    "80gb": Profile(
        "80gb",
        80,
        quantize=False,
        low_vram=False,
        rank=32,
        batch=4,
        multires=True,
        why={
            "quantize": "remove quantization first (AI-Toolkit's advice for 80 GB cards)",
            "low_vram": "not needed with 80 GB",
            "linear": "rank 32 captures a complex style better, and the memory allows it",
            "batch_size": "then raise the batch to fill the memory",
            "resolution": "512/768/1024 buckets make the style hold at every scale",
        },
    ),
    "96gb": Profile(
        "96gb",
        96,
        quantize=False,
        quantize_te=False,
        low_vram=False,
        rank=32,
        batch=6,
        multires=True,
        why={
            "quantize": "the bf16 transformer fits many times over",
            "quantize_te": "the text encoder in bf16 (~16 GB) for the caching pass: exact "
            "embeddings, and it is unloaded before training anyway",
            "low_vram": "not needed with 96 GB (RTX PRO 6000 Blackwell)",
            "linear": "rank 32 captures a complex style better, and the memory allows it",
            "batch_size": "six images a step fill the card",
            "resolution": "512/768/1024 buckets make the style hold at every scale",
        },
    ),
}


def get_profile(name: str) -> Profile:
    if name not in _PROFILES:
        raise Invalid(f"There is no GPU profile {name!r}: use one of {', '.join(PROFILES)}.")
    return _PROFILES[name]


def profile_for_gpu(total_gb: float) -> str:
    """The largest profile that fits a card of `total_gb`."""
    fitting = [p for p in PROFILES if _PROFILES[p].gpu_gb <= total_gb + 1]
    return fitting[-1] if fitting else PROFILES[0]


def sample_captions(style: Style, trigger: str | None) -> list[tuple[str, Caption]]:
    """Sample prompts as structured captions in the guide's spirit, in the dataset's style.

    The trigger goes where the export puts it in training captions: at the start of the
    aesthetics, or of the description when the style is incomplete (then left out: a partial
    style block breaks Ideogram's caption rules).
    """
    complete = bool(style.medium and style.render)
    aesthetics = f"{trigger}, {style.aesthetics}" if trigger else style.aesthetics
    base = (
        style.model_copy(update={"aesthetics": aesthetics, "color_palette": []})
        if complete
        else Style()
    )

    def caption(
        name: str, hld: str, background: str, elements: list[Element]
    ) -> tuple[str, Caption]:
        return name, Caption(
            high_level_description=hld if complete or not trigger else f"{trigger}, {hld}",
            style=base,
            composition=Composition(background=background, elements=elements),
        )

    return [
        caption(
            "close-up portrait",
            "A close-up portrait of an old woman looking to the side.",
            "plain dark ground",
            [Element(box=Box(0.2, 0.1, 0.8, 0.95), desc="an old woman's head and shoulders")],
        ),
        caption(
            "half-length",
            "A half-length figure of a young musician holding a lute.",
            "a dim interior",
            [
                Element(box=Box(0.15, 0.1, 0.85, 1.0), desc="a young man in a loose white shirt"),
                Element(box=Box(0.3, 0.55, 0.8, 0.9), desc="a lute held across his chest"),
            ],
        ),
        caption(
            "multi-figure",
            "Three card players around a table, one of them cheating.",
            "a tavern wall fading into darkness",
            [
                Element(box=Box(0.0, 0.2, 0.35, 1.0), desc="a card player leaning in"),
                Element(box=Box(0.35, 0.15, 0.65, 1.0), desc="a card player holding his cards"),
                Element(box=Box(0.65, 0.2, 1.0, 1.0), desc="a card player hiding a card"),
            ],
        ),
        caption(
            "outside the dataset",
            "A red vintage motorcycle parked in a narrow street at night.",
            "a narrow cobbled street with closed shutters",
            [Element(box=Box(0.15, 0.35, 0.9, 0.95), desc="a red vintage motorcycle")],
        ),
        caption(
            "on-image text",
            "A shop sign hanging above a doorway.",
            "a stone wall",
            [
                Element(
                    type="text",
                    box=Box(0.2, 0.2, 0.8, 0.45),
                    text="THE GOLDEN LAMP",
                    desc="painted capital letters on a wooden sign",
                )
            ],
        ),
    ]


def training_config(
    *,
    name: str,
    slug: str,
    folder_path: str,
    trigger_word: str | None,
    resolution: int,
    steps: int,
    profile: str,
    style: Style,
    samples_trigger: str | None,
    samples_prefix: bool = False,
    alpha_mask: bool = False,
    guide_dialect: bool = False,
) -> CommentedMap:
    """The YAML document as a ruamel map, comments attached.

    `config.name` is the slug: the trainer pastes it into a JSON dump of the config
    (get_config), where a quote or backslash of the dataset's own name would break it.
    `samples_prefix`: the trainer prefixes training captions with the word but never sample
    prompts, so each sample prompt is written as a prefixed training caption reads.
    """
    p = get_profile(profile)
    resolutions = p.resolutions(resolution)
    process = CommentedMap()
    process["type"] = "diffusion_trainer"
    process["training_folder"] = "output"
    process["device"] = "cuda"
    if trigger_word:
        process["trigger_word"] = trigger_word
    process["performance_log_every"] = 10
    network = CommentedMap(
        type="lora", linear=p.rank, linear_alpha=p.rank, network_kwargs={"ignore_if_contains": []}
    )
    _why(network, "linear", p)
    process["network"] = network
    process["save"] = CommentedMap(
        dtype="bf16",
        save_every=250,
        max_step_saves_to_keep=12,
        save_format="diffusers",
        push_to_hub=False,
    )
    dataset = CommentedMap()
    dataset["folder_path"] = folder_path
    dataset["mask_path"] = None
    dataset["mask_min_value"] = 0.1
    dataset["default_caption"] = ""
    dataset["caption_ext"] = "json"
    dataset["caption_dropout_rate"] = 0.05
    dataset["cache_latents_to_disk"] = True
    dataset["is_reg"] = False
    dataset["network_weight"] = 1
    dataset["resolution"] = CommentedSeq(resolutions)
    _why(dataset, "resolution", p)
    dataset["controls"] = []
    dataset["shrink_video_to_frames"] = True
    dataset["num_frames"] = 1
    dataset["flip_x"] = False
    dataset["flip_y"] = False
    dataset["num_repeats"] = 1
    if alpha_mask:
        dataset["alpha_mask"] = True
        dataset.yaml_add_eol_comment(
            "the kept transparency is a loss mask: transparent pixels are not trained on "
            "(the image itself is read as RGB)",
            "alpha_mask",
        )
    process["datasets"] = [dataset]
    train = CommentedMap()
    train["batch_size"] = p.batch
    _why(train, "batch_size", p)
    train_items: tuple[tuple[str, Any], ...] = (
        ("bypass_guidance_embedding", False),
        ("steps", steps),
        ("gradient_accumulation", 1),
        ("train_unet", True),
        ("train_text_encoder", False),
        ("gradient_checkpointing", True),
        ("noise_scheduler", "flowmatch"),
        ("optimizer", "adamw8bit"),
        ("timestep_type", "linear"),
        ("content_or_style", "balanced"),
        ("optimizer_params", {"weight_decay": 0.0001}),
        ("unload_text_encoder", False),
        ("cache_text_embeddings", True),
        ("lr", 0.0001),
        ("ema_config", {"use_ema": True, "ema_decay": 0.99}),
        ("skip_first_sample", True),
        ("force_first_sample", False),
        ("disable_sampling", True),
        ("dtype", "bf16"),
        ("diff_output_preservation", False),
        ("diff_output_preservation_multiplier", 1),
        ("diff_output_preservation_class", "person"),
        ("switch_boundary_every", 1),
        ("loss_type", "mse"),
    )
    for k, v in train_items:
        train[k] = v
    train.yaml_add_eol_comment(
        "cached once, then the text encoder is unloaded (never unload it without caching)",
        "cache_text_embeddings",
    )
    process["train"] = train
    process["logging"] = CommentedMap(log_every=1, use_ui_logger=True)
    model = CommentedMap()
    model["name_or_path"] = "ideogram-ai/ideogram-4-fp8"
    model["quantize"] = p.quantize
    _why(model, "quantize", p)
    if p.quantize:
        model["qtype"] = "qfloat8"
    model["quantize_te"] = p.quantize_te
    _why(model, "quantize_te", p)
    if p.quantize_te:
        model["qtype_te"] = "qfloat8"
    model["arch"] = "ideogram4"
    model["low_vram"] = p.low_vram
    _why(model, "low_vram", p)
    model["model_kwargs"] = {}
    model["unconditional_lora_path"] = UNCONDITIONAL_LORA
    model.yaml_add_eol_comment(
        "AI-Toolkit's own default for ideogram4: used only in the unconditional pass of samples",
        "unconditional_lora_path",
    )
    model["layer_offloading"] = p.offload > 0
    _why(model, "layer_offloading", p)
    model["layer_offloading_text_encoder_percent"] = 1
    model["layer_offloading_transformer_percent"] = p.offload if p.offload else 1
    process["model"] = model
    samples = CommentedSeq()
    for _, cap in sample_captions(style, None if samples_prefix else samples_trigger):
        prompt = json.dumps(to_trainer(cap), separators=(",", ":"), ensure_ascii=False)
        if not samples_prefix:
            # The trainer reads "${X}" anywhere in the YAML as an environment variable; in a
            # structured prompt "$" can be the JSON escape, which the model reads back as "$".
            prompt = prompt.replace("$", "\\u0024")
        if samples_prefix and samples_trigger:
            # What the loader makes of a training caption in prefix mode: commas gain a
            # space, then the word is prepended.
            prompt = f"{samples_trigger} " + ", ".join(prompt.split(","))
        for strength, seed in ((0.5, 42), (0.75, 42), (1.0, 42)):
            samples.append(CommentedMap(prompt=prompt, network_multiplier=strength, seed=seed))
    sample = CommentedMap()
    sample_items: tuple[tuple[str, Any], ...] = (
        ("sampler", "flowmatch"),
        ("sample_every", 250),
        ("width", 768),
        ("height", 768),
        ("samples", samples),
        ("neg", ""),
        ("seed", 42),
        ("walk_seed", False),
        ("guidance_scale", 4),
        ("sample_steps", 30),
        ("num_frames", 1),
        ("fps", 1),
    )
    for k, v in sample_items:
        sample[k] = v
    sample.yaml_add_eol_comment(
        "each sample keeps its own seed, for comparable checkpoints", "walk_seed"
    )
    sample.yaml_set_comment_before_after_key(
        "samples",
        before="Structured prompts in the dataset's style at LoRA strengths 0.5 / 0.75 / 1.0;\n"
        "sampling is off (train.disable_sampling) as in the guide: set it to false to watch.",
        indent=6,
    )
    process["sample"] = sample
    config = CommentedMap()
    config["name"] = slug
    config["process"] = [process]
    doc = CommentedMap()
    doc["job"] = "extension"
    doc["config"] = config
    doc["meta"] = CommentedMap(name="[name]", version="1.0")
    guide = (
        "\nForced: the captions are in the guide's dialect, with pixel [x1, y1, x2, y2] boxes; "
        "this ideogram4\ntrainer reads every bbox as 0..1000 [y_min, x_min, y_max, x_max], so "
        "every box is misplaced."
        if guide_dialect
        else ""
    )
    doc.yaml_set_start_comment(
        f"Written by Atelier for the dataset {slug!r}, profile {profile} "
        f"(~{p.vram_estimate_gb(resolution)} GB estimated peak). Edit freely; exporting again "
        f"replaces this file.{guide}"
    )
    return doc


def dump(doc: CommentedMap) -> str:
    """The config as YAML text in which no "${" remains for the trainer to read.

    AI-Toolkit replaces "${NAME}" anywhere in the file's text by an environment variable
    before it parses the YAML (an unset one stops it). Every text holding a "$" (a style
    block's sample prompt in any trigger placement, a dataset's folder) is written as a
    double-quoted scalar with the "$" as the YAML escape \x24: the parsed text is unchanged.
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


def _why(node: CommentedMap, key: str, p: Profile) -> None:
    if key in p.why:
        node.yaml_add_eol_comment(p.why[key], key)
