"""Which checkpoint still spells right: the text each sample shows, read back and scored.

The guide's sign of overtraining is garbled text: a LoRA that learnt the style too hard
forgets how to spell. For every sample whose prompt holds text elements, the drafting engine
reads the text inside each element's box (with a margin) alone, as the draft's second reading
does, and the reading is scored against the prompt's text (character error rate). The board
shows each step's text accuracy and marks where it falls.

Ideogram's safety filter answers with a flat grey placeholder instead of an image: such a
sample is marked blocked and left out of the score, not judged as garbled.

Readings are kept in `<data dir>/training/spelling/`, one file per run folder (Atelier never
writes into a run folder), so each sample is read once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageStat

from app.captions import boxes
from app.captions.draft_quality import char_error_rate
from app.engines.interface import read_crop
from app.training import runs

FALL = 0.1  # a step this far below the best step before it: the text is being forgotten
GREY_SPREAD = 4.0  # a blocked placeholder: every channel's spread under this (of 255)...
GREY_CAST = 6.0  # ...and its channels' means this close to each other


@dataclass(frozen=True)
class Target:
    text: str
    box: boxes.Box


@dataclass
class Reading:
    expected: str
    read: str | None
    cer: float | None


@dataclass
class SampleResult:
    step: int
    index: int
    blocked: bool = False
    readings: list[Reading] = field(default_factory=list)

    @property
    def accuracy(self) -> float | None:
        scored = [r.cer for r in self.readings if r.cer is not None]
        if self.blocked or not scored:
            return None
        return 1.0 - min(1.0, sum(scored) / len(scored))


@dataclass(frozen=True)
class StepAccuracy:
    step: int
    accuracy: float | None  # mean over the step's samples with text; None if none scored
    samples: int
    blocked: int
    falls: bool  # this step's text is FALL or more below the best step before it


def targets(config: runs.RunConfig) -> dict[int, list[Target]]:
    """Each sample prompt's text elements with their boxes, by the prompt's index."""
    out: dict[int, list[Target]] = {}
    for spec in config.samples:
        try:
            data = json.loads(spec.prompt)
            elements = data["compositional_deconstruction"]["elements"]
        except (ValueError, KeyError, TypeError):
            continue
        found = []
        for e in elements if isinstance(elements, list) else []:
            if not isinstance(e, dict) or e.get("type") != "text" or not e.get("text"):
                continue
            try:
                box = boxes.from_official([int(v) for v in e["bbox"]])
            except (KeyError, TypeError, ValueError):
                continue
            if not box.is_degenerate:
                found.append(Target(str(e["text"]), box))
        if found:
            out[spec.index] = found
    return out


def is_blocked(img: Image.Image) -> bool:
    """A flat grey picture: what Ideogram returns when its safety filter blocks a prompt."""
    stat = ImageStat.Stat(img.convert("RGB").resize((64, 64)))
    flat = max(stat.stddev) < GREY_SPREAD
    grey = max(stat.mean) - min(stat.mean) < GREY_CAST
    return flat and grey and 40 < sum(stat.mean) / 3 < 215


def crops(img: Image.Image, wanted: list[Target]) -> list[Image.Image]:
    """Each target's box cut from the sample, with the second reading's margin."""
    return [read_crop(img, t.box) for t in wanted]


def store_path(training_dir: Path, run_dir: Path) -> Path:
    key = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:24]
    return training_dir / "spelling" / f"{key}.json"


def load(training_dir: Path, run_dir: Path) -> dict[str, SampleResult]:
    """The readings kept for this run, by sample file name."""
    try:
        data = json.loads(store_path(training_dir, run_dir).read_text())
        return {
            name: SampleResult(
                step=r["step"],
                index=r["index"],
                blocked=r["blocked"],
                readings=[Reading(**x) for x in r["readings"]],
            )
            for name, r in data.get("samples", {}).items()
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _save(training_dir: Path, run_dir: Path, results: dict[str, SampleResult]) -> None:
    path = store_path(training_dir, run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"run": str(run_dir), "samples": {n: asdict(r) for n, r in results.items()}})
    )
    os.replace(tmp, path)


Reader = Callable[[list[Image.Image]], "list[str | None] | None"]


def check_run(
    *,
    run_dir: Path,
    config: runs.RunConfig,
    training_dir: Path,
    read: Reader,
    batch: int = 32,
) -> dict[str, SampleResult]:
    """Reads the text of every sample not read before (`read` is the engine's read_texts),
    keeps the results, and returns them all."""
    wanted = targets(config)
    results = load(training_dir, run_dir)
    todo = [s for s in runs.list_samples(run_dir) if s.index in wanted and s.name not in results]
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        pieces: list[Image.Image] = []
        owners: list[tuple[str, int]] = []
        for sample in chunk:
            result = SampleResult(step=sample.step, index=sample.index)
            results[sample.name] = result
            try:
                with Image.open(run_dir / "samples" / sample.name) as img:
                    img.load()
                    picture = img.convert("RGB")
            except (OSError, ValueError):
                del results[sample.name]  # unreadable now; tried again next time
                continue
            if is_blocked(picture):
                result.blocked = True
                continue
            for i, piece in enumerate(crops(picture, wanted[sample.index])):
                pieces.append(piece)
                owners.append((sample.name, i))
        read_back = read(pieces) if pieces else []
        if read_back is None:
            raise ValueError("This drafting engine cannot read text back.")
        for (name, i), text in zip(owners, read_back, strict=True):
            expected = wanted[results[name].index][i].text
            cer = None if text is None else char_error_rate(text, expected)
            results[name].readings.append(Reading(expected, text, cer))
        _save(training_dir, run_dir, results)
    return results


def by_step(results: dict[str, SampleResult]) -> list[StepAccuracy]:
    """Each step's text accuracy, oldest first, marking the steps where it falls."""
    steps: dict[int, list[SampleResult]] = {}
    for r in results.values():
        steps.setdefault(r.step, []).append(r)
    out = []
    best: float | None = None
    for step in sorted(steps):
        scored = [a for r in steps[step] if (a := r.accuracy) is not None]
        accuracy = sum(scored) / len(scored) if scored else None
        falls = accuracy is not None and best is not None and accuracy <= best - FALL
        out.append(
            StepAccuracy(
                step=step,
                accuracy=accuracy,
                samples=len(steps[step]),
                blocked=sum(r.blocked for r in steps[step]),
                falls=falls,
            )
        )
        if accuracy is not None and (best is None or accuracy > best):
            best = accuracy
    return out


def as_dict(steps: list[StepAccuracy]) -> list[dict[str, Any]]:
    return [asdict(s) for s in steps]
