"""Qwen2-VL and Qwen2.5-VL models with random weights, built offline.

For the tests (a tiny model on the CPU) and the speed benchmark (the 2B and 7B shapes on a
GPU): no download, a byte-level tokenizer holding the Qwen special tokens, and a chat
template of our own. Their output is noise, but it goes through the real loading, prompting,
constrained decoding and parsing code.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

Family = Literal["qwen2_vl", "qwen2_5_vl"]
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
) -> tuple[Any, Any]:
    """A (model, processor) pair with random weights (`tok`: the byte-level tokenizer unless
    given one)."""
    import torch
    from transformers import AutoModelForImageTextToText

    tok = tok or tokenizer()
    processor = _processor(family, tok, max_pixels=max_pixels)
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


def _processor(family: Family, tok: Any, *, max_pixels: int) -> Any:
    pixels: dict[str, Any] = {"size": {"shortest_edge": 4 * 28 * 28, "longest_edge": max_pixels}}
    if family == "qwen2_vl":
        from transformers import Qwen2VLProcessor, Qwen2VLVideoProcessor

        return Qwen2VLProcessor(
            image_processor=_image_processor(**pixels),
            tokenizer=tok,
            video_processor=Qwen2VLVideoProcessor(),
            chat_template=CHAT_TEMPLATE,
        )
    from transformers import Qwen2_5_VLProcessor, Qwen2VLVideoProcessor

    return Qwen2_5_VLProcessor(
        image_processor=_image_processor(**pixels),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )
