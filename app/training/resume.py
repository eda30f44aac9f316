"""A run in legs: where AI-Toolkit resumes a stopped run, and what each leg really did.

The trainer (27a03a91, jobs/process/BaseSDTrainProcess.py) resumes by itself whenever its
run folder holds a checkpoint: `get_latest_save_path` takes, of `<name>*.safetensors` in
`<training_folder>/<name>/`, the file with the newest ctime (the final `<name>.safetensors`
too), and `load_training_state_from_metadata` reads the step from that file's metadata
(`training_info.step`), unless `train.start_step` is set. A stop (Ctrl+C) saves nothing, so
a stopped run resumes at its newest save. The final save is written under no step and is
replaced by the next leg's final save, so before a finished run goes on, its final file is
kept as the step file the trainer would have written (`<name>_<steps:09d>.safetensors`);
that copy, being newest, is also what the trainer resumes from. Each leg's log says where it
really started ("Found step N in metadata"); a leg that restarted at 0 is said so.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, col, select

from app.models import TrainJob

FOUND_STEP = re.compile(r"Found step (\d+) in metadata")
RESUMING = "RESUMING FROM"
STEP_FILE = re.compile(r"_(\d{9})\.safetensors$")


@dataclass(frozen=True)
class Leg:
    job: TrainJob
    number: int  # 1 for the first
    start: int  # the step the trainer started this leg at, as its log says
    end: int
    restarted: bool  # a later leg the trainer started again at step 0

    @property
    def kind(self) -> str:
        if self.number == 1:
            return "started"
        return "continued" if self.start >= self.previous_total else "resumed"

    previous_total: int = 0


def saves(run_dir: Path, name: str) -> list[Path]:
    """The files the trainer would resume from, oldest first (by ctime, as it sorts them)."""
    try:
        found = [p for p in run_dir.glob(f"{glob_escape(name)}*.safetensors") if p.is_file()]
    except OSError:
        return []
    # The trainer drops these name variants unless the run is itself named so.
    found = [p for p in found if "_LoRA" in name or "_LoRA" not in p.name]
    return sorted(found, key=_ctime)


def newest_save(run_dir: Path, name: str) -> Path | None:
    found = saves(run_dir, name)
    return found[-1] if found else None


def step_of(path: Path, *, final_step: int) -> int:
    """The step a checkpoint holds, by its name (the final file: the run's last step)."""
    m = STEP_FILE.search(path.name)
    return int(m[1]) if m else final_step


def keep_final(run_dir: Path, name: str, steps: int) -> Path | None:
    """The finished run's final checkpoint kept as its step file before the run goes on (the
    next leg's final save replaces `<name>.safetensors`); the copy, newest, is where the
    trainer resumes. None when there is no final file."""
    final = run_dir / f"{name}.safetensors"
    if not final.is_file():
        return None
    kept = run_dir / f"{name}_{steps:09d}.safetensors"
    if not kept.exists():
        tmp = run_dir / f".{kept.name}.atelier-tmp"
        shutil.copyfile(final, tmp)
        os.replace(tmp, kept)
    else:
        os.utime(kept)  # mtime only: ctime moves too, so it is the newest save again
    return kept


def legs_of(session: Session, run_dir: str) -> list[TrainJob]:
    """Every job that trained in this run folder, oldest first."""
    query = select(TrainJob).where(TrainJob.run_dir == run_dir).order_by(col(TrainJob.id))
    return list(session.exec(query))


def newest_leg(session: Session, job: TrainJob) -> TrainJob:
    found = legs_of(session, job.run_dir)
    return found[-1] if found else job


def describe(jobs: list[TrainJob], log_text: dict[int, str]) -> list[Leg]:
    """Each leg with the step it really started at (from its log) and where it got to."""
    out: list[Leg] = []
    previous_total = 0
    for n, job in enumerate(jobs, start=1):
        text = log_text.get(job.id or 0, "")
        found = FOUND_STEP.findall(text)
        start = int(found[-1]) if found else 0
        out.append(
            Leg(
                job=job,
                number=n,
                start=start,
                end=max(job.last_step, start),
                restarted=n > 1 and start == 0 and bool(text),
                previous_total=previous_total,
            )
        )
        previous_total = job.total_steps
    return out


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _ctime(p: Path) -> float:
    try:
        return p.stat().st_ctime
    except OSError:
        return 0.0
