"""Runs AI-Toolkit's own caption, trigger, bucket and sample-prompt code on an export.

Atelier runs this file with the checkout's Python, in a subprocess of its own:
`python -I aitk_probe.py CHECKOUT CONFIG_YAML`. It imports nothing of Atelier. It prints one
JSON object: per image the text the trainer's text encoder receives, its tokens and buckets;
per sample prompt the prompt the pipeline receives and the flags the trainer read out of it;
and a fingerprint of every trainer function it ran, so Atelier can tell which version it is.

No model is loaded and no GPU is touched. Modules of the trainer that import only the
standard library are imported as they are (through a stand-in `toolkit` package, so its
__init__, which imports huggingface_hub, is not run); from modules that import torch at the
top, the functions and classes needed are taken out of the file with `ast` and executed
alone, with the module's standard-library imports (docs/trainer.md section 9).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import json
import os
import sys
import traceback
import types
from typing import Any

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")  # what the trainer lists (docs/trainer.md 1)
LIGHT_IMPORTS = {"PIL", "yaml", "oyaml"}

fingerprints: dict[str, str] = {}
notes: list[str] = []


def _fingerprint(key: str, source: str) -> None:
    fingerprints[key] = hashlib.sha256(source.encode()).hexdigest()[:16]


def _light(node: ast.stmt) -> bool:
    if isinstance(node, ast.Import):
        roots = [a.name.split(".")[0] for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level or not node.module:
            return False
        roots = [node.module.split(".")[0]]
    else:
        return False
    return all(r in sys.stdlib_module_names or r in LIGHT_IMPORTS for r in roots)


def extract(root: str, rel: str, wanted: list[str], extra: dict[str, Any]) -> dict[str, Any]:
    """The named top-level functions/classes (or `Class.method`) of a trainer file, executed
    with the file's light imports and `extra` as their globals."""
    path = os.path.join(root, rel)
    with open(path, encoding="utf-8") as f:
        source = f.read()
    tree = ast.parse(source, path)
    ns: dict[str, Any] = {"__name__": "aitk_" + rel.replace("/", "_")[:-3], "__file__": path}
    for node in tree.body:
        if _light(node):
            with contextlib.suppress(ImportError):  # not installed here: unused by what we run
                exec(compile(ast.Module(body=[node], type_ignores=[]), path, "exec"), ns)
    ns.update(extra)
    found: dict[str, Any] = {}
    for name in wanted:
        cls_name, _, meth = name.partition(".")
        target: ast.FunctionDef | ast.ClassDef | None = next(
            (
                n
                for n in tree.body
                if isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name == cls_name
            ),
            None,
        )
        if isinstance(target, ast.ClassDef) and meth:
            target = next(
                (n for n in target.body if isinstance(n, ast.FunctionDef)
                 and n.name == meth),
                None,
            )  # fmt: skip
        if target is None:
            raise LookupError(f"{rel} has no {name}")
        _fingerprint(f"{rel}:{name}", ast.get_source_segment(source, target) or "")
        exec(compile(ast.Module(body=[target], type_ignores=[]), path, "exec"), ns)
        found[name] = ns[target.name]
    return found


def import_module(root: str, dotted: str) -> types.ModuleType:
    """A trainer module that imports only the standard library, imported as it is."""
    rel = dotted.replace(".", "/") + ".py"
    path = os.path.join(root, rel)
    spec = importlib.util.spec_from_file_location(dotted, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[dotted] = module
    spec.loader.exec_module(module)
    with open(path, encoding="utf-8") as f:
        _fingerprint(rel, f.read())
    return module


def stand_in_toolkit(root: str) -> None:
    """`toolkit` as a bare package over the checkout's folder: its submodules import, its
    __init__ (huggingface_hub) does not run."""
    pkg = types.ModuleType("toolkit")
    pkg.__path__ = [os.path.join(root, "toolkit")]
    sys.modules["toolkit"] = pkg
    try:
        import oyaml  # noqa: F401  (AI-Toolkit's requirement; PyYAML keeps order too)
    except ImportError:
        import yaml

        sys.modules["oyaml"] = yaml
        notes.append("oyaml is not installed in this Python: PyYAML read the YAML instead.")


def constants(root: str, rel: str) -> dict[str, Any]:
    """Literal assignments (module level and `self.x = literal`) of a trainer file."""
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    out: dict[str, Any] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            t = node.targets[0]
            key = t.id if isinstance(t, ast.Name) else (
                f"self.{t.attr}" if isinstance(t, ast.Attribute) else None
            )  # fmt: skip
            if key is None:
                continue
            try:
                out.setdefault(key, ast.literal_eval(node.value))
            except ValueError:
                continue
    return out


def tokenizer_for(path: str) -> tuple[Any, str | None]:
    """A token counter for the text encoder's input, or why there is none.

    As get_prompt_embeds does it: the model's chat template around the text (a user turn,
    then the assistant's opening), tokenized without special tokens added. Read with
    `tokenizers` and jinja2 from the files transformers itself loads (tokenizer.json and the
    chat template), from a folder or this machine's Hugging Face cache: no transformers
    import, so no torch and no seconds of start-up.
    """
    try:
        import jinja2
        import jinja2.ext
        import jinja2.sandbox
        from tokenizers import Tokenizer
    except ImportError as e:
        return None, f"{e.name} is not installed in this Python"

    def find(name: str) -> str | None:
        if os.path.isdir(path):
            candidate = os.path.join(path, name)
            return candidate if os.path.isfile(candidate) else None
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        got = try_to_load_from_cache(path, name)
        return got if isinstance(got, str) else None

    tokenizer_json = find("tokenizer.json")
    if tokenizer_json is None and os.path.isdir(path):
        return None, f"{path} holds no tokenizer.json"
    if tokenizer_json is None:
        return None, f"{path}'s tokenizer is not in this machine's Hugging Face cache"
    config: dict[str, Any] = {}
    if found := find("tokenizer_config.json"):
        with open(found, encoding="utf-8") as f:
            config = json.load(f)
    template = config.get("chat_template")
    if found := find("chat_template.jinja"):
        with open(found, encoding="utf-8") as f:
            template = f.read()
    elif found := find("chat_template.json"):
        with open(found, encoding="utf-8") as f:
            template = json.load(f).get("chat_template")
    if not isinstance(template, str):
        return None, f"{path} has no chat template to wrap the text in"

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    # The environment transformers renders chat templates in.
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.globals["raise_exception"] = raise_exception
    compiled = env.from_string(template)
    tokenizer = Tokenizer.from_file(tokenizer_json)
    specials = {k: v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}

    def count(text: str) -> int:
        messages = [{"role": "user", "content": [{"type": "text", "text": text}]}]
        rendered = compiled.render(messages=messages, add_generation_prompt=True, **specials)
        return len(tokenizer.encode(rendered, add_special_tokens=False).ids)

    return count, None


def main(root: str, config_path: str) -> dict[str, Any]:
    root = os.path.abspath(root)
    sys.path.insert(0, root)
    stand_in_toolkit(root)
    config_mod = import_module(root, "toolkit.config")
    ideogram = import_module(root, "toolkit.ideogram_caption")
    buckets = import_module(root, "toolkit.buckets")
    inject = extract(root, "toolkit/prompt_utils.py", ["inject_trigger_into_prompt"], {})[
        "inject_trigger_into_prompt"
    ]
    mixins = extract(
        root,
        "toolkit/dataloader_mixins.py",
        ["clean_caption", "CaptionProcessingDTOMixin.load_caption",
         "CaptionProcessingDTOMixin.get_caption"],
        {"inject_trigger_into_prompt": inject},
    )  # fmt: skip
    modules = extract(
        root,
        "toolkit/config_modules.py",
        [
            "DatasetConfig",
            "SampleConfig",
            "SampleItem",
            "GenerateImageConfig._process_prompt_string",
        ],
        {},
    )
    model = constants(root, "extensions_built_in/diffusion_models/ideogram4/ideogram4.py")
    divisibility = int(model.get("self.vae_scale_factor", 8)) * int(model.get("self.patch_size", 2))

    config = config_mod.get_config(config_path)  # ${VAR}, YAML, [name]: as run.py reads it
    process = config["config"]["process"][0]
    trigger = process.get("trigger_word")
    model_kwargs = (process.get("model") or {}).get("model_kwargs") or {}
    # Ideogram4Model._load_text_encoder: model_kwargs.text_encoder_path, else Qwen3-VL-8B.
    te_path = str(model_kwargs.get("text_encoder_path") or model.get("QWEN3_VL_PATH"))
    max_len = int(model_kwargs.get("max_text_length", model.get("self.max_text_length", 3072)))
    count_tokens, token_note = tokenizer_for(te_path)

    def encoder_view(text: str) -> dict[str, Any]:
        digested = ideogram.digest_caption_string(text)
        out: dict[str, Any] = {
            "encoder_text": digested,
            "structured": ideogram.is_ideogram_caption_str(text),
            "tokens": None,
            "truncated": False,
        }
        if count_tokens is not None:
            n = count_tokens(digested)
            out["tokens"], out["truncated"] = n, n > max_len
        return out

    item_cls = type(
        "FileItem",
        (),
        {
            "load_caption": mixins["CaptionProcessingDTOMixin.load_caption"],
            "get_caption": mixins["CaptionProcessingDTOMixin.get_caption"],
        },
    )
    datasets_out = []
    for raw_ds in process.get("datasets") or []:
        raw_ds = dict(raw_ds)
        if (process.get("train") or {}).get("cache_text_embeddings"):
            raw_ds["cache_text_embeddings"] = True  # as BaseSDTrainProcess.__init__ does
        ds_cfg = modules["DatasetConfig"](**raw_ds)
        if ds_cfg.caption_dropout_rate > 0 and not ds_cfg.cache_text_embeddings:
            # A random event per step: the text shown is the one of the other steps.
            notes.append(
                f"caption_dropout_rate {ds_cfg.caption_dropout_rate}: on that share of steps "
                "the trainer drops the caption to an empty text."
            )
            ds_cfg.caption_dropout_rate = 0
        if ds_cfg.shuffle_tokens or ds_cfg.token_dropout_rate > 0:
            notes.append(
                "shuffle_tokens / token_dropout_rate are set: the trainer reorders or drops "
                "comma-separated pieces of every caption at random, breaking JSON captions."
            )
        if ds_cfg.trigger_word is None and trigger is not None:
            # BaseSDTrainProcess.__init__ hands the process's trigger word to its datasets.
            ds_cfg.trigger_word = trigger
        folder = ds_cfg.folder_path
        images: list[dict[str, Any]] = []
        names = sorted(
            n for n in os.listdir(folder)
            if n.lower().endswith(IMAGE_EXTS) and not n.startswith(".")
        )  # fmt: skip
        resolutions = ds_cfg.resolution if isinstance(ds_cfg.resolution, list) else [
            ds_cfg.resolution
        ]  # fmt: skip
        for name in names:
            path = os.path.join(folder, name)
            item = item_cls()
            item.path, item.dataset_config, item.is_reg = path, ds_cfg, ds_cfg.is_reg
            item.raw_caption = item.raw_caption_short = item.caption_short = None
            item.trigger_word = ds_cfg.trigger_word
            item.load_caption(None)
            caption_path = os.path.splitext(path)[0] + ds_cfg.caption_ext
            try:
                with open(caption_path, encoding="utf-8") as f:
                    saved: str | None = f.read()
            except OSError:
                saved = None
            entry: dict[str, Any] = {
                "file": name,
                "caption_file": os.path.basename(caption_path) if saved is not None else None,
                "saved": saved,
                "caption": item.caption,
            }
            entry.update(encoder_view(item.caption))
            try:
                from PIL import Image
                from PIL.ImageOps import exif_transpose

                with Image.open(path) as im:
                    w, h = exif_transpose(im).size  # as the loader measures it
                entry["width"], entry["height"] = w, h
                sw, sh = int(w * ds_cfg.scale), int(h * ds_cfg.scale)
                entry["buckets"] = [
                    {"resolution": r}
                    | dict(buckets.get_bucket_for_image_size(sw, sh, resolution=r,
                                                             divisibility=divisibility))
                    for r in resolutions
                ]  # fmt: skip
            except Exception as e:
                entry["image_error"] = f"{type(e).__name__}: {e}"
            images.append(entry)
        datasets_out.append(
            {"folder": folder, "trigger_word": ds_cfg.trigger_word, "images": images,
             "resolutions": resolutions, "caption_ext": ds_cfg.caption_ext}
        )  # fmt: skip

    samples_out = []
    raw_sample = process.get("sample") or {}
    if raw_sample:
        sample_cfg = modules["SampleConfig"](**raw_sample)
        parse = modules["GenerateImageConfig._process_prompt_string"]
        for i, item in enumerate(sample_cfg.samples):
            given = item.prompt or ""
            # BaseSDTrainProcess.sample: the trigger is placed, never added, then parsed.
            prompt = inject(given, trigger, None, False) if trigger is not None else given
            gen = types.SimpleNamespace(
                prompt=prompt,
                width=item.width,
                height=item.height,
                seed=item.seed,
                network_multiplier=item.network_multiplier,
            )
            before = dict(vars(gen))
            parse(gen)
            flags = {k: v for k, v in vars(gen).items() if k != "prompt" and before.get(k) != v}
            entry = {"index": i, "given": given, "prompt": gen.prompt, "flags": flags,
                     "width": gen.width, "height": gen.height}  # fmt: skip
            entry.update(encoder_view(gen.prompt))
            samples_out.append(entry)
    return {
        "datasets": datasets_out,
        "samples": samples_out,
        "trigger_word": trigger,
        "divisibility": divisibility,
        "max_text_length": max_len,
        "text_encoder": te_path,
        "tokenizer_note": token_note,
        "fingerprints": fingerprints,
        "notes": notes,
    }


if __name__ == "__main__":
    try:
        result = main(sys.argv[1], sys.argv[2])
    except Exception as e:
        result = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-4000:]}
    sys.stdout.write(json.dumps(result, ensure_ascii=False))
