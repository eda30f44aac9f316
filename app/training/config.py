"""The exported training YAML turned into the one Atelier trains with: samples at step 0
and at every save, and every save kept, so the board has each step to show and to pick."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from app.errors import Invalid
from app.export import config_yaml


@dataclass(frozen=True)
class Plan:
    name: str
    steps: int
    save_every: int
    keep: int
    training_folder: str

    def run_dir(self, checkout: Path) -> Path:
        """Where the trainer writes this run: <training_folder>/<name>, from the checkout."""
        folder = Path(self.training_folder)
        return (folder if folder.is_absolute() else checkout / folder) / self.name


def _yaml() -> YAML:
    yaml = YAML()
    yaml.width = 4096  # the JSON prompts stay on one line, as the export writes them
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.preserve_quotes = True
    return yaml


def for_training(
    text: str, *, save_every: int | None = None, steps: int | None = None, name: str | None = None
) -> tuple[str, Plan]:
    """The YAML with sampling on at step 0 and every save, every save kept, and why.

    `steps` sets the run's length (a continued run's new end); `name` renames the run, and
    with it its folder: the trainer resumes from any checkpoint already in that folder.
    """
    try:
        doc = _yaml().load(text)
        config = doc["config"]
        process = config["process"][0]
        train, save, sample = process["train"], process["save"], process["sample"]
    except (YAMLError, KeyError, IndexError, TypeError):
        raise Invalid("The exported training YAML has no config.process[0] to train.") from None
    if steps is not None:
        train["steps"] = _positive(steps, "train.steps")
    if name is not None:
        config["name"] = name
    # A start_step makes the trainer ignore the step saved in the checkpoint it resumes
    # from (BaseSDTrainProcess.load_training_state_from_metadata): a resume would restart at
    # that step, 0 by default. The step must come from the checkpoint.
    train.pop("start_step", None)
    steps = _positive(train.get("steps"), "train.steps")
    if save_every is not None:
        save["save_every"] = _positive(save_every, "save.save_every")
    save_every = _positive(save.get("save_every"), "save.save_every")
    # Every save, plus one to spare: the rotation never deletes a step the board may pick.
    keep = math.ceil(steps / save_every) + 1
    save["max_step_saves_to_keep"] = keep
    save.yaml_add_eol_comment(
        f"every save is kept ({steps} steps / {save_every} = {keep - 1} saves) so any step "
        "can be picked on Atelier's board",
        "max_step_saves_to_keep",
    )
    train["disable_sampling"] = False
    train.yaml_add_eol_comment(
        "Atelier's board shows the samples while training", "disable_sampling"
    )
    train["skip_first_sample"] = False
    train.yaml_add_eol_comment(
        "step 0 is the model before training: the LoRA-off reference on the board",
        "skip_first_sample",
    )
    train["force_first_sample"] = False
    sample["sample_every"] = save_every
    sample.yaml_add_eol_comment(
        "samples at every save, so each checkpoint has its pictures", "sample_every"
    )
    _replace_samples_comment(sample)
    # Only AI-Toolkit's own UI may write into its database; a run of ours never points there.
    process.pop("sqlite_db_path", None)
    # Written as the export writes it: a "$" of the user's text never forms a "${" again.
    text = config_yaml.dump(doc)
    plan = Plan(
        name=str(config.get("name") or ""),
        steps=steps,
        save_every=save_every,
        keep=keep,
        training_folder=str(process.get("training_folder") or "output"),
    )
    if not plan.name:
        raise Invalid("The exported training YAML has no config.name.")
    return text, plan


def _replace_samples_comment(sample: Any) -> None:
    # The export's note before `samples` ends by saying sampling is off; here it is on. Its
    # other lines (the validation plan and its cost) stay.
    kept: list[str] = []
    for key, tokens in list(sample.ca.items.items()):
        if len(tokens) > 2 and tokens[2] is not None and "disable_sampling" in tokens[2].value:
            lines = [ln.strip().removeprefix("#").strip() for ln in tokens[2].value.splitlines()]
            kept += [ln for ln in lines if ln and "disable_sampling" not in ln]
            tokens[2] = None
            sample.ca.items[key] = tokens
    if "samples" in sample:
        sample.yaml_set_comment_before_after_key(
            "samples",
            before="\n".join(
                [
                    *kept,
                    "Sampled at step 0 (the LoRA-off reference) and at every save when "
                    "training from Atelier.",
                ]
            ),  # fmt: skip
            indent=8,
        )


def _positive(value: Any, what: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n <= 0:
        raise Invalid(f"The training YAML's {what} must be a positive number of steps.")
    return n
