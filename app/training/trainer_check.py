"""The trainer's own code as a check of an export: what its text encoder will receive.

`aitk_probe.py` runs in the checkout's Python (a subprocess; no model, no GPU) and calls
AI-Toolkit's caption loading, trigger placement, ideogram4 normaliser, bucket choice and
sample-prompt parsing on the exported folder and YAML. Here its answer is compared with
what the user saved: the caption file Atelier wrote, read as JSON with the trigger word put
where `[trigger]` stands, written compactly, is the text the encoder should receive.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.config import child_environment
from app.errors import Invalid
from app.export.lint import count_tokens
from app.images import buckets as our_buckets
from app.training.checkout import Checkout

PROBE = Path(__file__).with_name("aitk_probe.py")
CHECKED_COMMIT = "27a03a91f23eb1b757d5ec2e80ee3e129cfcc350"
# The probe's fingerprints of the trainer code it runs, at CHECKED_COMMIT: a checkout whose
# code differs here is another version than the one Atelier's export was checked against.
CHECKED_FINGERPRINTS = {
    "toolkit/config.py": "526b26b8017a0997",
    "toolkit/ideogram_caption.py": "6aea9334022bba06",
    "toolkit/buckets.py": "0c690491050606fd",
    "toolkit/prompt_utils.py:inject_trigger_into_prompt": "5eaac60bb225ced5",
    "toolkit/dataloader_mixins.py:clean_caption": "8b492c973520342a",
    "toolkit/dataloader_mixins.py:CaptionProcessingDTOMixin.load_caption": "aab084d60bbca4b8",
    "toolkit/dataloader_mixins.py:CaptionProcessingDTOMixin.get_caption": "3cc503ff82c795d6",
    "toolkit/config_modules.py:DatasetConfig": "c363d603c00a96e4",
    "toolkit/config_modules.py:SampleConfig": "2b8a17009d4c9019",
    "toolkit/config_modules.py:SampleItem": "8c1162695bfe8fab",
    "toolkit/config_modules.py:GenerateImageConfig._process_prompt_string": "5e59f72388e541ef",
}
TIMEOUT_S = 300.0  # a first import of transformers on a slow disk takes a while


@dataclass(frozen=True)
class Bucket:
    resolution: int
    width: int
    height: int
    ours: tuple[int, int]  # what Atelier's own bucket model says

    @property
    def agrees(self) -> bool:
        return (self.width, self.height) == self.ours


@dataclass
class Checked:
    """One image's caption or one sample prompt, as the trainer hands it to the encoder."""

    name: str  # 001.png, or "sample 3"
    encoder_text: str
    structured: bool  # read as an Ideogram JSON caption (normalised), else raw text
    tokens: int
    tokens_exact: bool
    truncated: bool
    differences: list[str] = field(default_factory=list)
    buckets: list[Bucket] = field(default_factory=list)
    size: tuple[int, int] | None = None
    flags: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckReport:
    checkout: Path
    python: Path
    config_path: Path
    commit: str | None
    changed: list[str]  # trainer code that differs from the version Atelier was checked against
    tokenizer_note: str | None
    images: list[Checked]
    samples: list[Checked]
    notes: list[str]
    max_text_length: int

    @property
    def version_note(self) -> str | None:
        if not self.changed:
            return None
        at = f" (this checkout is at {self.commit[:8]})" if self.commit else ""
        return (
            f"This checkout's trainer code is another version than the one Atelier was "
            f"checked against ({CHECKED_COMMIT[:8]}){at}: {', '.join(self.changed)} differ. "
            "What is shown below is what this version does."
        )

    @property
    def differing(self) -> int:
        return sum(1 for c in [*self.images, *self.samples] if c.differences)

    def as_dict(self) -> dict[str, Any]:
        def one(c: Checked) -> dict[str, Any]:
            return {
                "name": c.name, "encoder_text": c.encoder_text, "structured": c.structured,
                "tokens": c.tokens, "tokens_exact": c.tokens_exact, "truncated": c.truncated,
                "differences": c.differences, "flags": c.flags,
                "size": list(c.size) if c.size else None,
                "buckets": [
                    {"resolution": b.resolution, "width": b.width, "height": b.height,
                     "atelier": list(b.ours)} for b in c.buckets
                ],
            }  # fmt: skip

        return {
            "checkout": str(self.checkout), "python": str(self.python),
            "config": str(self.config_path), "commit": self.commit,
            "checked_commit": CHECKED_COMMIT, "version_note": self.version_note,
            "tokenizer_note": self.tokenizer_note, "notes": self.notes,
            "images": [one(c) for c in self.images], "samples": [one(c) for c in self.samples],
            "differing": self.differing,
        }  # fmt: skip


def git_commit(root: Path) -> str | None:
    """The checkout's commit, read from .git without running git; None when not a clone."""
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head[5:]
        loose = git / ref
        if loose.is_file():
            return loose.read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        return None
    return None


def export_config(folder: Path, slug: str) -> Path:
    """The training YAML an export into `folder` wrote for the dataset, or why it is missing."""
    path = folder / "config" / f"{slug}.yaml"
    if not path.is_file():
        raise Invalid(
            f"There is no export of this dataset in {folder} ({path.name} is not in its config "
            "folder): export into the checkout first."
        )
    return path


def run_probe(*, checkout: Checkout, config_path: Path, timeout_s: float = TIMEOUT_S) -> Any:
    """The probe's JSON answer, or a sentence saying why the checkout's Python gave none."""
    try:
        done = subprocess.run(
            # -I: the checkout's Python sees none of Atelier's modules or PYTHONPATH.
            [str(checkout.python), "-I", str(PROBE), str(checkout.root), str(config_path)],
            cwd=checkout.root,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=child_environment(),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise Invalid(
            f"The trainer's code did not answer within {timeout_s:.0f} s in {checkout.python}."
        ) from None
    except OSError as e:
        raise Invalid(f"{checkout.python} could not be started: {e}.") from None
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Invalid(f"The trainer's code could not run in {checkout.python}: {last}") from None
    if "error" in answer:
        raise Invalid(
            f"The trainer's code failed on this export in {checkout.python}: {answer['error']}."
        )
    return answer


def check_export(
    *, checkout: Checkout, config_path: Path, timeout_s: float = TIMEOUT_S
) -> CheckReport:
    """Runs the trainer's own functions on the export and compares with what was saved."""
    answer = run_probe(checkout=checkout, config_path=config_path, timeout_s=timeout_s)
    prints: dict[str, str] = answer.get("fingerprints") or {}
    changed = sorted(
        k.split(":")[-1] for k, v in CHECKED_FINGERPRINTS.items() if prints.get(k) != v
    )
    trigger = answer.get("trigger_word")
    max_len = int(answer.get("max_text_length") or 3072)
    images: list[Checked] = []
    for ds in answer.get("datasets") or []:
        for img in ds.get("images") or []:
            checked = _checked(img["file"], img, max_len)
            checked.differences = _caption_differences(img, ds.get("trigger_word"))
            if "width" in img:
                checked.size = (int(img["width"]), int(img["height"]))
                for b in img.get("buckets") or []:
                    r = int(b["resolution"])
                    ours = our_buckets.fit(checked.size[0], checked.size[1], resolution=r)
                    bucket = Bucket(
                        resolution=r, width=int(b["width"]), height=int(b["height"]),
                        ours=(ours.bucket_width, ours.bucket_height),
                    )  # fmt: skip
                    checked.buckets.append(bucket)
                    if not bucket.agrees:
                        checked.differences.append(
                            f"At {r} px the trainer trains it at {bucket.width}x{bucket.height}; "
                            f"Atelier's lint assumed {ours.bucket_width}x{ours.bucket_height}."
                        )
            elif img.get("image_error"):
                checked.differences.append(f"The trainer cannot read it: {img['image_error']}.")
            images.append(checked)
    samples: list[Checked] = []
    for s in answer.get("samples") or []:
        checked = _checked(f"sample {s['index'] + 1}", s, max_len)
        checked.flags = dict(s.get("flags") or {})
        checked.differences = _sample_differences(s, trigger)
        samples.append(checked)
    return CheckReport(
        checkout=checkout.root,
        python=checkout.python,
        config_path=config_path,
        commit=git_commit(checkout.root),
        changed=changed,
        tokenizer_note=answer.get("tokenizer_note"),
        images=images,
        samples=samples,
        notes=list(answer.get("notes") or []),
        max_text_length=max_len,
    )


def _checked(name: str, raw: dict[str, Any], max_len: int) -> Checked:
    text = str(raw.get("encoder_text") or "")
    tokens, exact = raw.get("tokens"), True
    if tokens is None:
        # No tokenizer in the checkout's Python: Atelier's own count (exact when the
        # tokenizer.json is cached here, else the estimate lint uses), without the template.
        tokens, exact = count_tokens(text)
    return Checked(
        name=name,
        encoder_text=text,
        structured=bool(raw.get("structured")),
        tokens=int(tokens),
        tokens_exact=exact,
        truncated=bool(raw.get("truncated")) or int(tokens) > max_len,
    )


def intended(text: str, trigger: str | None) -> str | None:
    """What the saved text means, as the encoder should read it: the JSON with the trigger
    word where `[trigger]` / `[name]` stand, written compactly; None when it is not JSON."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    word = trigger or ""

    def place(v: Any) -> Any:
        if isinstance(v, str):
            return v.replace("[trigger]", word).replace("[name]", word)
        if isinstance(v, list):
            return [place(x) for x in v]
        if isinstance(v, dict):
            return {k: place(x) for k, x in v.items()}
        return v

    return json.dumps(place(data), ensure_ascii=False, separators=(",", ":"))


def _caption_differences(img: dict[str, Any], trigger: str | None) -> list[str]:
    saved = img.get("saved")
    if saved is None:
        return ["It has no caption file: the trainer trains it with the default caption."]
    return _compare(saved, str(img.get("encoder_text") or ""), trigger, bool(img["structured"]))


def _sample_differences(s: dict[str, Any], trigger: str | None) -> list[str]:
    out = []
    if s.get("flags"):
        read = ", ".join(f"{k} = {v!r}" for k, v in s["flags"].items())
        out.append(
            f"The trainer read options out of this prompt at a '--' ({read}) and cut the "
            "prompt there."
        )
    return out + _compare(
        str(s.get("given") or ""), str(s.get("encoder_text") or ""), trigger,
        bool(s.get("structured")),
    )  # fmt: skip


def _compare(saved: str, got: str, trigger: str | None, structured: bool) -> list[str]:
    want = intended(saved, trigger)
    if want is None:
        return [] if got == saved.replace("[trigger]", trigger or "") else [_where(saved, got)]
    if got == want:
        return []
    if not structured:
        return [
            "The trainer reads it as plain text, not as an Ideogram caption (it is not a JSON "
            f"object that starts with '{{' when it reaches the encoder: {got[:40]!r}…), so it "
            "is not normalised."
        ]
    return [_where(want, got)]


def _where(want: str, got: str) -> str:
    """Where the encoder's text first departs from the saved one, with a little context."""
    i = next((k for k, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), None)
    if i is None:
        i = min(len(want), len(got))
    lo = max(0, i - 25)
    return (
        f"The encoder receives other text than was saved, from character {i + 1}: saved "
        f"…{want[lo : i + 25]!r}…, received …{got[lo : i + 25]!r}…"
    )
