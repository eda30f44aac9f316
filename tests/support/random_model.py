"""Qwen2-VL and Qwen2.5-VL models with random weights, built offline.

For the tests (a tiny model on the CPU) and the speed benchmark (the 2B and 7B shapes on a
GPU): no download, a byte-level tokenizer holding the Qwen special tokens, and a chat
template of our own. Their output is noise, but it goes through the real loading, prompting,
constrained decoding and parsing code.

`from_real` and `save_real` build one around a real checkpoint's small files instead
(../shared/models: the real 151k vocabulary, chat template and processor configs of
Qwen2.5-VL-7B and Qwen3-VL-4B/8B, no weights), at its own shape or shrunk to a tiny one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

Family = Literal["qwen2_vl", "qwen2_5_vl"]
RealShape = Literal["tiny", "full"]

# Beside the project's checkout, where the house keeps them; absent on a fresh clone.
REAL_MODELS = Path(__file__).resolve().parents[2].parent / "shared" / "models"
# Every file of a real checkpoint but its weights (config.json is written again, shrunk).
REAL_FILES = (
    "chat_template.json",
    "generation_config.json",
    "merges.txt",
    "preprocessor_config.json",
    "tokenizer_config.json",
    "video_preprocessor_config.json",
    "vocab.json",
)
Shape = Literal["tiny", "tiny16", "2b", "7b"]

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|box_start|>",
    "<|box_end|>",
]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# (text hidden, layers, heads, kv heads, MLP, vocab, vision depth, vision width, vision heads)
SHAPES: dict[str, tuple[int, int, int, int, int, int, int, int, int]] = {
    "tiny": (32, 2, 4, 2, 64, 0, 1, 32, 4),
    "tiny16": (64, 2, 4, 2, 128, 0, 1, 32, 4),  # head size 16, the smallest Triton's tiles take
    "2b": (1536, 28, 12, 2, 8960, 151936, 32, 1280, 16),
    "7b": (3584, 28, 28, 4, 18944, 152064, 32, 1280, 16),
}


def tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 151_000) -> Any:
    """A tokenizer with the Qwen special tokens: byte-level (every byte one token), or, given
    a `corpus`, a byte-level BPE trained on it like Qwen's (GPT-style pre-splitting), so that
    prompts have about the length and the vocabulary its size that a real one gives."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    if corpus is None:
        vocab = {ch: i for i, ch in enumerate(alphabet)}
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, initial_alphabet=alphabet, show_progress=False
        )
        tok.train_from_iterator(corpus, trainer)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def python_sources(megabytes: float = 40) -> Iterator[str]:
    """English-bearing text found on any machine with Python: the standard library's source
    (docstrings and comments), up to `megabytes`, in a fixed order. A corpus for `tokenizer`."""
    import sysconfig

    left = int(megabytes * 1e6)
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if left <= 0:
            return
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        left -= len(text)
        yield text


def build(
    shape: Shape = "tiny",
    family: Family = "qwen2_vl",
    *,
    max_pixels: int = 64 * 28 * 28,
    seed: int = 0,
    dtype: Any = None,
    device: str = "cpu",
    tok: Any = None,
    chat_template: str = CHAT_TEMPLATE,
) -> tuple[Any, Any]:
    """A (model, processor) pair with random weights (`tok`: the byte-level tokenizer unless
    given one, such as `real_tokenizer`'s)."""
    import torch
    from transformers import AutoModelForImageTextToText

    tok = tok or tokenizer()
    processor = _processor(family, tok, max_pixels=max_pixels, chat_template=chat_template)
    hidden, layers, heads, kv, mlp, vocab, v_depth, v_width, v_heads = SHAPES[shape]
    vocab = vocab or len(tok)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = hidden // heads
    quarter = head_dim // 2 // 4
    mrope = [head_dim // 2 - 2 * quarter - quarter, quarter + quarter // 2, quarter + quarter // 2]
    mrope[0] = head_dim // 2 - mrope[1] - mrope[2]
    text = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": mlp,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "max_position_embeddings": 32768,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope},
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision: dict[str, Any] = {
        "depth": v_depth,
        "num_heads": v_heads,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    config_class: Any
    if family == "qwen2_vl":
        from transformers import Qwen2VLConfig

        config_class = Qwen2VLConfig
        vision |= {"embed_dim": v_width, "hidden_size": hidden, "mlp_ratio": 4}
    else:
        from transformers import Qwen2_5_VLConfig

        config_class = Qwen2_5_VLConfig
        vision |= {
            "hidden_size": v_width,
            "intermediate_size": v_width * 4 if shape.startswith("tiny") else 3420,
            "out_hidden_size": hidden,
            "window_size": 112,
            "fullatt_block_indexes": [0] if shape.startswith("tiny") else [7, 15, 23, 31],
        }
    config = config_class(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=shape == "2b",
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype or torch.float32)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model.eval(), processor


def real_folder(name: str, root: Path | None = None) -> Path | None:
    """The folder of a real checkpoint's small files (e.g. "Qwen3-VL-4B-Instruct"), or None
    where it is not on this machine."""
    folder = (root or REAL_MODELS) / name
    return folder if (folder / "config.json").is_file() else None


def real_tokenizer(folder: Path) -> tuple[Any, str]:
    """A real checkpoint's tokenizer and chat template (Qwen2-VL shares Qwen2.5-VL's)."""
    import json

    from transformers import AutoTokenizer

    template = json.loads((folder / "chat_template.json").read_text())["chat_template"]
    return AutoTokenizer.from_pretrained(folder), template


def _shrink(config: Any) -> None:
    """A real config at a tiny size, every other field kept: text hidden 64 (head size 16,
    the smallest Triton's tiles take), 2 layers; a vision tower one block deep, 32 wide."""
    text, vision = config.text_config, config.vision_config
    text.hidden_size, text.intermediate_size, text.num_hidden_layers = 64, 128, 2
    text.num_attention_heads, text.num_key_value_heads = 4, 2
    if hasattr(text, "head_dim"):
        text.head_dim = 16
    if getattr(text, "layer_types", None):
        text.layer_types = text.layer_types[:2]
    rope = getattr(text, "rope_parameters", None) or {}
    if "mrope_section" in rope:
        rope["mrope_section"] = [2, 3, 3]  # sums to head size / 2
    vision.depth, vision.hidden_size, vision.num_heads = 1, 32, 4
    vision.intermediate_size = 64
    if hasattr(vision, "out_hidden_size"):
        vision.out_hidden_size = text.hidden_size
    else:
        vision.embed_dim = 32
    if hasattr(vision, "fullatt_block_indexes"):
        vision.fullatt_block_indexes = [0]
    if hasattr(vision, "deepstack_visual_indexes"):
        vision.deepstack_visual_indexes = [0]


def from_real(
    folder: Path,
    shape: RealShape = "tiny",
    *,
    max_pixels: int = 64 * 28 * 28,
    seed: int = 0,
    dtype: Any = None,
    device: str = "cpu",
) -> tuple[Any, Any]:
    """A (model, processor) pair around a real checkpoint's files: its processor from
    preprocessor_config.json, its tokenizer and chat template, random weights at its own
    shape ("full") or a tiny one."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    config = AutoConfig.from_pretrained(folder)
    if shape == "tiny":
        _shrink(config)
    processor = AutoProcessor.from_pretrained(
        folder, size={"shortest_edge": 4 * 28 * 28, "longest_edge": max_pixels}, use_fast=True
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype or torch.float32)
    return model.eval(), processor


def save_real(folder: Path, path: Path, shape: RealShape = "tiny", **kw: Any) -> Path:
    """A real checkpoint's small files copied to `path`, with random weights beside them and
    config.json at their shape: what a user's download looks like, to the loading code."""
    import shutil

    model, _ = from_real(folder, shape, **kw)
    path.mkdir(parents=True, exist_ok=True)
    for name in REAL_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, path / name)
    model.save_pretrained(path)
    return path


def save(path: Path, shape: Shape = "tiny", family: Family = "qwen2_vl", **kw: Any) -> Path:
    """Builds a random model and writes it where from_pretrained can load it."""
    model, processor = build(shape, family, **kw)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _image_processor(**kw: Any) -> Any:
    """Qwen2-VL's torch-based image processor (it can run on the GPU): the default class from
    transformers 5.2x, the "Fast" one before."""
    import transformers
    from transformers import Qwen2VLImageProcessor

    if "Torchvision" not in "".join(c.__name__ for c in Qwen2VLImageProcessor.__mro__):
        fast = getattr(transformers, "Qwen2VLImageProcessorFast", None)
        if fast is not None:
            return fast(**kw)
    return Qwen2VLImageProcessor(**kw)


def _processor(family: Family, tok: Any, *, max_pixels: int, chat_template: str) -> Any:
    pixels: dict[str, Any] = {"size": {"shortest_edge": 4 * 28 * 28, "longest_edge": max_pixels}}
    if family == "qwen2_vl":
        from transformers import Qwen2VLProcessor, Qwen2VLVideoProcessor

        return Qwen2VLProcessor(
            image_processor=_image_processor(**pixels),
            tokenizer=tok,
            video_processor=Qwen2VLVideoProcessor(),
            chat_template=chat_template,
        )
    from transformers import Qwen2_5_VLProcessor, Qwen2VLVideoProcessor

    return Qwen2_5_VLProcessor(
        image_processor=_image_processor(**pixels),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=chat_template,
    )
