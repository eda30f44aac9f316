"""Our own model of what AI-Toolkit does to an Atelier export, for the export tests.

Written from docs/trainer.md sections 1, 2, 4 and 10 and from reading ostris/ai-toolkit at commit
27a03a91f23eb1b757d5ec2e80ee3e129cfcc350 (2026-08-21); none of its code is copied. What was
checked there, function by function:

- toolkit/dataloader_mixins.py `get_caption_item`: the caption file (<stem> + caption_ext) is
  read as UTF-8 text; `clean_caption` is a no-op now; no JSON parsing.
- toolkit/dataloader_mixins.py `get_caption`: with a trigger word set, training captions use
  add_if_not_present=True; the text is split on ',' and rejoined with ', ' BEFORE the trigger
  is placed (caption_dropout is skipped when text embeddings are cached; shuffle_tokens and
  token_dropout are never emitted by Atelier).
- toolkit/prompt_utils.py `inject_trigger_into_prompt`: '[name]' and '[trigger]' are replaced
  by the word (by '' when there is none), textually; if the word then appears nowhere (case
  sensitive) and add_if_not_present, '<word> ' is prepended. Sample prompts
  (jobs/process/BaseSDTrainProcess.py) use add_if_not_present=False.
- extensions_built_in/diffusion_models/ideogram4/ideogram4.py `get_prompt_embeds` calls
  toolkit/ideogram_caption.py `digest_caption_string` on every prompt: text that, stripped,
  starts with '{', parses as a JSON object and holds a `compositional_deconstruction` object is
  normalised and re-serialised compactly (ensure_ascii=False, separators ',' ':'); other text
  goes to the encoder as it is.
- ideogram_caption.py `normalize_caption_dict` / `normalize_style` / `normalize_element`:
  `aspect_ratio` dropped; top-level order hld, style, composition, then unknown keys; style
  keeps aesthetics / lighting when present (even empty), one render key only when truthy
  (photo branch for a photograph medium), medium when not null, the palette only when a
  non-empty list of valid colours remains (uppercased, #abc expanded, duplicates dropped, 16
  at most); unknown style keys go last. Elements: type, bbox when not null, then (text,) desc,
  the palette under the same rule (5 at most), unknown keys last. background then elements,
  then other keys, in the composition.
- toolkit/config.py `get_config` / `preprocess_config`: ${VAR} in the file text is replaced by
  the environment variable (an unset one is an error); the YAML is loaded, dumped to JSON,
  '[name]' replaced by config.name in that JSON text, and loaded again.
- dataloader_mixins.py `get_latent_path` (and `get_clip_vision_embeddings_path`): the cache
  file is `_latent_cache/<stem>_<md5 of the sorted-key JSON of filename, scale and crop,
  url-safe base64 without '='>.safetensors`: no pixels in the key. `_build_text_embedding_path`
  keys `_t_e_cache` by the caption text. toolkit/data_loader.py keeps `.aitk_size.json`
  (image sizes by "/<file>", checked against size and integer mtime only).
- dataloader_mixins.py `ImageProcessingDTOMixin.load_and_process_image`: the image is opened
  with PIL and `exif_transpose`d; with `alpha_mask: true` it becomes `np.array(img)[:, :, :3]`
  then `Image.fromarray`, and `convert('RGB')` either way. `LatentCachingMixin.
  cache_latents_all_latents` calls it for every image (its `_prep`, only_load_latents=True)
  and re-raises what it raises: the run stops there.
- dataloader_mixins.py `MaskFileItemDTOMixin`: `alpha_mask: true` makes every image its own
  mask; `load_mask_image` does `np_img[:, :, :3] = np_img[:, :, 3:]`, keeps the first three
  channels, `convert('RGB')`, a Gaussian blur of a random radius under 0.5 % of the short side,
  `convert('L')`; the loss is multiplied by it (mask_min_value 0: transparent is not trained).
  It runs for every training item, cached latents or not (`load_and_process_image`).
- toolkit/data_loader.py `AiToolkitDataset._get_single_item`: any exception while loading an
  item prints "Error loading image, skipping and loading a different one" and trains another.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MEDIA = ("photograph", "illustration", "3d_render", "painting", "graphic_design")
_ALIASES = {
    "photo": "photograph",
    "3d render": "3d_render",
    "3d-render": "3d_render",
    "3drender": "3d_render",
    "render": "3d_render",
    "3d": "3d_render",
    "graphic design": "graphic_design",
    "graphic-design": "graphic_design",
    "graphic": "graphic_design",
}


def loader_caption(path: Path, trigger: str | None) -> str:
    """The training caption the loader builds from the caption file at `path`."""
    raw = path.read_text(encoding="utf-8")
    rejoined = ", ".join(raw.split(","))
    return place_trigger(rejoined, trigger, prepend=bool(trigger))


def place_trigger(text: str, trigger: str | None, *, prepend: bool) -> str:
    word = trigger or ""
    for placeholder in ("[name]", "[trigger]"):
        text = text.replace(placeholder, word)
    if word.strip() and prepend and word not in text:
        text = f"{word} {text}"
    return text


def sample_prompt(prompt: str, trigger: str | None) -> str:
    """A sample prompt as the trainer hands it to the model (never prefixed)."""
    return place_trigger(prompt, trigger, prepend=False)


def encoder_text(caption: str) -> str:
    """What the ideogram4 model gives its text encoder for a caption or prompt."""
    stripped = caption.strip()
    if not stripped.startswith("{"):
        return caption
    try:
        data = json.loads(stripped)
    except ValueError:
        return caption
    if not isinstance(data, dict) or not isinstance(data.get("compositional_deconstruction"), dict):
        return caption
    return json.dumps(normalise(data), ensure_ascii=False, separators=(",", ":"))


def is_structured(caption: str) -> bool:
    """Whether the model reads the caption as a structured (JSON) caption."""
    if not caption.strip().startswith("{"):
        return False
    try:
        data = json.loads(caption.strip())
    except ValueError:
        return False
    return isinstance(data, dict) and isinstance(data.get("compositional_deconstruction"), dict)


def normalise(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "high_level_description" in data:
        out["high_level_description"] = data["high_level_description"]
    if "style_description" in data:
        out["style_description"] = _style(data["style_description"])
    comp = data.get("compositional_deconstruction")
    if isinstance(comp, dict):
        c: dict[str, Any] = {}
        if "background" in comp:
            c["background"] = comp["background"]
        if isinstance(comp.get("elements"), list):
            c["elements"] = [_element(e) for e in comp["elements"]]
        c.update({k: v for k, v in comp.items() if k not in ("background", "elements")})
        out["compositional_deconstruction"] = c
    out.update({k: v for k, v in data.items() if k not in (*out, "aspect_ratio")})
    return out


def _medium(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    key = value.strip().rstrip(".").strip().lower()
    if key in MEDIA:
        return key
    return _ALIASES.get(key, value.strip())


def _colours(value: Any, limit: int) -> list[str] | None:
    if not isinstance(value, list | tuple):
        return None
    out: list[str] = []
    for c in value:
        if not isinstance(c, str):
            continue
        s = c.strip()
        if re.fullmatch(r"#[0-9a-fA-F]{3}", s):
            s = "#" + "".join(ch * 2 for ch in s[1:])
        if re.fullmatch(r"#[0-9a-fA-F]{6}", s) and s.upper() not in out:
            out.append(s.upper())
        if len(out) == limit:
            break
    return out or None


def _style(style: Any) -> Any:
    if not isinstance(style, dict):
        return style
    medium = _medium(style["medium"]) if style.get("medium") is not None else None
    photo, art = style.get("photo") or None, style.get("art_style") or None
    # A known medium decides the branch; otherwise a lone art_style does; else photo.
    photo_branch = medium == "photograph" if medium in MEDIA else not (art and not photo)
    out: dict[str, Any] = {k: style[k] for k in ("aesthetics", "lighting") if k in style}
    render = (photo if photo is not None else art) if photo_branch else (art or photo)
    key = "photo" if photo_branch else "art_style"
    pairs = [(key, render), ("medium", medium)] if photo_branch else [
        ("medium", medium), (key, render)
    ]  # fmt: skip
    out.update({k: v for k, v in pairs if v is not None})
    palette = _colours(style.get("color_palette"), 16)
    if palette is not None:
        out["color_palette"] = palette
    known = ("aesthetics", "lighting", "photo", "art_style", "medium", "color_palette")
    out.update({k: v for k, v in style.items() if k not in known})
    return out


def _element(el: Any) -> Any:
    if not isinstance(el, dict):
        return el
    kind = el.get("type", "obj")
    out: dict[str, Any] = {"type": kind}
    if el.get("bbox") is not None:
        out["bbox"] = el["bbox"]
    for key in ("text", "desc") if kind == "text" else ("desc",):
        if key in el:
            out[key] = el[key]
    palette = _colours(el.get("color_palette"), 5)
    if palette is not None:
        out["color_palette"] = palette
    out.update({k: v for k, v in el.items() if k not in out and k != "color_palette"})
    return out


def read_config(path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The training config as the trainer's get_config leaves it (raises where it would)."""
    from ruamel.yaml import YAML

    env = dict(os.environ) if env is None else env

    def var(m: re.Match[str]) -> str:
        if m.group(1) not in env:
            raise ValueError(f"Environment variable {m.group(1)} not set")
        return env[m.group(1)]

    text = re.sub(r"\$\{([^}]+)\}", var, path.read_text(encoding="utf-8"))
    config = YAML(typ="safe").load(text)
    name = config["config"]["name"]
    return json.loads(json.dumps(config).replace("[name]", name))


def latent_cache_path(image: Path, *, width: int, height: int) -> Path:
    """Where the trainer caches the latent of `image` trained whole at width x height."""
    key = {
        "filename": image.name,
        "scale_to_width": width,
        "scale_to_height": height,
        "crop_x": 0,
        "crop_y": 0,
        "crop_width": width,
        "crop_height": height,
        "latent_space_version": "ideogram4",
        "latent_version": 1,
    }
    digest = hashlib.md5(json.dumps(key, sort_keys=True).encode()).digest()
    tag = base64.urlsafe_b64encode(digest).decode().replace("=", "")
    return image.parent / "_latent_cache" / f"{image.stem}_{tag}.safetensors"


def cache_latents(folder: Path) -> dict[Path, str]:
    """Caches a 'latent' for every image (the sha256 of the pixels it was made from), as the
    trainer would on its first run, skipping those already cached; returns what it wrote."""
    from PIL import Image

    written = {}
    for png in sorted(folder.glob("*.png")):
        with Image.open(png) as im:
            w, h = im.size
        target = latent_cache_path(png, width=w, height=h)
        if target.exists():
            continue
        target.parent.mkdir(exist_ok=True)
        digest = hashlib.sha256(png.read_bytes()).hexdigest()
        target.write_text(digest)
        written[target] = digest
    return written


def stale_latents(folder: Path) -> list[Path]:
    """Cache entries the trainer would use for an image they were not made from."""
    from PIL import Image

    stale = []
    for png in sorted(folder.glob("*.png")):
        with Image.open(png) as im:
            w, h = im.size
        entry = latent_cache_path(png, width=w, height=h)
        if entry.exists() and entry.read_text() != hashlib.sha256(png.read_bytes()).hexdigest():
            stale.append(entry)
    return stale


class LatentCachingCrash(Exception):
    """What stops the trainer's latent caching (it re-raises): the run ends there."""


@dataclass
class AlphaRead:
    """What the trainer makes of one exported image with `alpha_mask: true`."""

    pixels: Any  # the RGB image the VAE encodes (PIL), or None where caching crashed
    mask: Any  # the loss mask (PIL 'L', before blur), or None where the item was skipped
    skipped: str | None  # the error the loader printed before training another image


def trainer_pixels(path: Path, *, alpha_mask: bool) -> Any:
    """The RGB image load_and_process_image hands the VAE (raises as it does)."""
    import numpy as np
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(Image.open(path))
    if alpha_mask:
        img = Image.fromarray(np.array(img)[:, :, :3])
    return img.convert("RGB")


def trainer_mask(path: Path) -> Any:
    """The loss mask load_mask_image makes of `path` with alpha_mask (raises as it does);
    before its random blur, which only softens the edges."""
    import numpy as np
    from PIL import Image, ImageOps

    np_img = np.array(ImageOps.exif_transpose(Image.open(path)))
    np_img[:, :, :3] = np_img[:, :, 3:]
    return Image.fromarray(np_img[:, :, :3]).convert("RGB").convert("L")


def read_with_alpha_mask(folder: Path) -> dict[str, AlphaRead]:
    """Every exported image as the trainer reads it with alpha_mask: true.

    Latent caching comes first and re-raises: LatentCachingCrash names the image that ended
    the run. Then each training item loads its mask; one that raises is skipped.
    """
    images = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")
    )
    pixels = {}
    for path in images:
        try:
            pixels[path.name] = trainer_pixels(path, alpha_mask=True)
        except Exception as e:
            raise LatentCachingCrash(f"{path.name}: {type(e).__name__}: {e}") from e
    out = {}
    for path in images:
        try:
            out[path.name] = AlphaRead(pixels[path.name], trainer_mask(path), None)
        except Exception as e:
            out[path.name] = AlphaRead(pixels[path.name], None, f"{type(e).__name__}: {e}")
    return out


def generation_prompt(prompt: str) -> str:
    """What toolkit/config_modules.py `GenerateImageConfig._process_prompt_string` keeps as the
    prompt: the text is stripped and cut at the first '--'; the rest is read as --flags."""
    return prompt.strip().split("--")[0].strip()


def epoch_batches(
    sizes: list[tuple[int, int]], resolutions: list[int], batch: int
) -> list[list[int]]:
    """One epoch's batches (image indices), as the trainer builds them.

    toolkit/config_modules.py `preprocess_dataset_raw_config` makes one dataset per resolution;
    toolkit/dataloader_mixins.py `setup_buckets` groups each one's images by crop size and
    `build_batch_indices` cuts every bucket into batches, padding the last one with the
    bucket's own images, repeated in order, up to the batch size.
    """
    from app.images.buckets import bucket_size

    out = []
    for r in resolutions:
        buckets: dict[tuple[int, int], list[int]] = {}
        for i, (w, h) in enumerate(sizes):
            buckets.setdefault(bucket_size(w, h, resolution=r), []).append(i)
        for members in buckets.values():
            for start in range(0, len(members), batch):
                chunk = members[start : start + batch]
                out.append(chunk + [chunk[i % len(chunk)] for i in range(batch - len(chunk))])
    return out
