"""The pick: favourites on the board, then one step's checkpoint copied out and recorded."""

from __future__ import annotations

import math
import os
import shutil
import uuid
from pathlib import Path

from sqlmodel import Session, col, select

from app.errors import Conflict, Invalid
from app.models import Dataset, LoraPick, RunFavourite
from app.training import runs


def toggle_favourite(session: Session, *, run_dir: Path, sample_index: int, step: int) -> bool:
    """Marks or unmarks one sample of a run; True when it is now a favourite."""
    key = str(run_dir)
    found = session.exec(
        select(RunFavourite).where(
            RunFavourite.run_dir == key,
            RunFavourite.sample_index == sample_index,
            RunFavourite.step == step,
        )
    ).first()
    if found is not None:
        session.delete(found)
        session.commit()
        return False
    session.add(RunFavourite(run_dir=key, sample_index=sample_index, step=step))
    session.commit()
    return True


def favourites(session: Session, *, run_dir: Path) -> set[tuple[int, int]]:
    """(sample index, step) of every favourite of the run."""
    rows = session.exec(select(RunFavourite).where(RunFavourite.run_dir == str(run_dir)))
    return {(r.sample_index, r.step) for r in rows}


def favourite_steps(session: Session, *, run_dir: Path) -> list[tuple[int, int]]:
    """(step, how many prompts chose it), the most chosen first: the steps to consider."""
    counts: dict[int, int] = {}
    for _, step in favourites(session, run_dir=run_dir):
        counts[step] = counts.get(step, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def checkpoint_for(run_dir: Path, config: runs.RunConfig, step: int) -> Path:
    """The LoRA file saved at `step`, or a sentence saying why there is none."""
    saved = runs.checkpoints(run_dir, config.name)
    if step in saved.by_step:
        return saved.by_step[step]
    if step == config.steps and saved.final is not None:
        return saved.final
    if step == 0:
        raise Invalid("Step 0 is the model before training: it has no LoRA to use.")
    if config.save_every and step % config.save_every == 0 and step < config.steps:
        needed = math.ceil(config.steps / config.save_every) + 1
        raise Invalid(
            f"The checkpoint of step {step} is gone: AI-Toolkit keeps only the last "
            f"{config.max_keep} saves (save.max_step_saves_to_keep: {config.max_keep}) and "
            f"deleted it. Set max_step_saves_to_keep to {needed} or more to keep every save "
            "next time (a run started from Atelier does)."
        )
    every = f" (it saved every {config.save_every} steps)" if config.save_every else ""
    raise Invalid(f"This run saved no checkpoint at step {step}{every}.")


def destination_name(dataset: Dataset, step: int) -> str:
    return f"{dataset.slug}_step{step:06d}.safetensors"


def use_step(
    session: Session,
    *,
    dataset: Dataset,
    run_dir: Path,
    step: int,
    to_dir: Path,
    recorded_yaml: str | None = None,
) -> LoraPick:
    """Copies the step's checkpoint into `to_dir`, named by dataset and step, and records it."""
    config = runs.read_config(run_dir, recorded_yaml)
    if config is None:
        raise Invalid(f"{run_dir} has no readable config: it does not look like a run folder.")
    source = checkpoint_for(run_dir, config, step)
    if not to_dir.is_dir():
        raise Invalid(f"There is no folder {str(to_dir)!r} to copy the LoRA into.")
    dest = to_dir / destination_name(dataset, step)
    if dest.exists():
        if dest.is_file() and _same_bytes(dest, source):
            pass  # picked before: the copy is already there
        else:
            raise Conflict(f"{dest} already exists and is another file: move it first.")
    else:
        # Copied under a temporary name then renamed: a reader (ComfyUI) never sees half a file.
        tmp = to_dir / f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    pick = LoraPick(
        dataset_id=dataset.id,  # type: ignore[arg-type]
        run_dir=str(run_dir),
        step=step,
        checkpoint=str(source),
        copied_to=str(dest),
    )
    session.add(pick)
    session.commit()
    session.refresh(pick)
    return pick


def picks(session: Session, *, dataset_id: int) -> list[LoraPick]:
    """The dataset's picks, newest first."""
    return list(
        session.exec(
            select(LoraPick)
            .where(LoraPick.dataset_id == dataset_id)
            .order_by(col(LoraPick.id).desc())
        )
    )


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True
