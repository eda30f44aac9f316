"""A stand-in for AI-Toolkit's run.py, for tests without a GPU.

It reads the config it is given and writes the run folder as the trainer does
(docs/trainer.md section 7): <training_folder>/<name>/ with config.yaml, samples named
<time_ms>__<step:09d>_<i>.<ext> written into samples/.tmp then moved with os.replace,
loss_log.db with the trainer's three tables, checkpoints <name>_<step:09d>.safetensors
rotated to the last save.max_step_saves_to_keep, and the final <name>.safetensors. It
prints a progress bar as tqdm does. fake.json in the working folder sets its pace and
its faults: {"step_s": 0.01, "oom_at": null, "sample_s": 0.0}.

It resumes as AI-Toolkit 27a03a91 does (jobs/process/BaseSDTrainProcess.py):
- `get_latest_save_path`: of the files `<name>*.safetensors` in the run folder, the one with
  the newest ctime (`max(paths, key=os.path.getctime)`), the final `<name>.safetensors` too;
- `load_training_state_from_metadata`: the step is read from the file's metadata
  (`training_info.step`), and only when `train.start_step` is not set; no metadata, no
  resume: the run starts again at step 0 (here the checkpoint file holds that metadata as
  JSON, `{"training_info": {"step": N}}`);
- `run`: the baseline samples only when the step is <= 1 (or `force_first_sample`); the
  loop runs `range(step, train.steps)` and neither saves nor samples at the step it resumed
  at; `save(step)` records `training_info.step = step`, the final save the step after the
  last one (= train.steps); a stop (Ctrl+C) saves nothing (run.py calls `on_error` only);
- `clean_up_saves`: `<name>_*` files sorted by ctime, all but the last
  `max_step_saves_to_keep` removed; the final file is not among them.
"""

import json
import os
import sqlite3
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw
from ruamel.yaml import YAML


def clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m:02d}:{s:02d}"


def main() -> int:
    print("Running 1 job", flush=True)
    behaviour = {"step_s": 0.01, "oom_at": None, "sample_s": 0.0}
    if Path("fake.json").is_file():
        behaviour.update(json.loads(Path("fake.json").read_text()))
    raw = YAML(typ="safe", pure=True).load(Path(sys.argv[1]).read_text())
    config = raw["config"]
    name = config["name"]
    process = config["process"][0]
    train, save, sample = process["train"], process["save"], process["sample"]
    root = Path(process.get("training_folder", "output")) / name
    root.mkdir(parents=True, exist_ok=True)
    yaml = YAML(typ="safe", pure=True)
    with (root / "config.yaml").open("w") as f:
        yaml.dump(raw, f)
    steps = int(train["steps"])
    save_every = int(save.get("save_every", 250))
    keep = int(save.get("max_step_saves_to_keep", 5))
    sampling = not train.get("disable_sampling", False)
    sample_every = int(sample.get("sample_every", 100))
    items = sample.get("samples") or []
    ext = sample.get("format", "jpg")

    def write_samples(step: int) -> None:
        print(f"Generating Images for step {step}", flush=True)
        folder = root / "samples"
        tmp = folder / ".tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        for i, _item in enumerate(items):
            time.sleep(behaviour["sample_s"])
            # The trainer's sampling bar looks like its training bar: n/total [elapsed<left, rate].
            sys.stderr.write(
                f"\rGenerating Images:  0%|   | {i}/{len(items)} [00:00<00:01,  3.00it/s]"
            )
            gen_time = int(time.time() * 1000)
            fname = f"{gen_time}__{step:09d}_{i}.{ext}"
            # A picture that changes with the step, so steps side by side look different.
            shade = (step * 37 + i * 53) % 256
            img = Image.new("RGB", (128, 128), (40 + i * 12 % 80, 30, 20 + shade // 4))
            r = 10 + (step * 3 + i * 7) % 50
            ImageDraw.Draw(img).ellipse((64 - r, 64 - r, 64 + r, 64 + r), fill=(shade, 180, 90))
            img.save(tmp / fname)
            os.replace(tmp / fname, folder / fname)

    def save_checkpoint(step: int | None) -> None:
        suffix = "" if step is None else f"_{step:09d}"
        path = root / f"{name}{suffix}.safetensors"
        meta = {"training_info": {"step": steps if step is None else step}}
        path.write_text(json.dumps(meta))
        if step is None:
            return
        saves = sorted(
            root.glob(f"{name}_*.safetensors"), key=lambda p: (p.stat().st_ctime, p.name)
        )
        for old in saves[:-keep]:
            print(f"Removing old save: {old}", flush=True)
            old.unlink()

    db = None
    if process.get("logging", {}).get("use_ui_logger"):
        db = sqlite3.connect(root / "loss_log.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL;")
        db.execute(
            "CREATE TABLE IF NOT EXISTS steps (step INTEGER PRIMARY KEY, wall_time REAL NOT NULL)"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS metric_keys (key TEXT PRIMARY KEY, first_seen_step INTEGER,"
            " last_seen_step INTEGER)"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS metrics (step INTEGER NOT NULL, key TEXT NOT NULL,"
            " value_real REAL, value_text TEXT, PRIMARY KEY (step, key))"
        )

    start_step = 0
    saves = [p for p in root.glob(f"{name}*.safetensors") if "_LoRA" not in p.name]
    if saves:
        latest = max(saves, key=os.path.getctime)
        print(f"#### IMPORTANT RESUMING FROM {latest} ####", flush=True)
        try:
            meta = json.loads(latest.read_text())
        except ValueError:
            meta = None
        if meta and "training_info" in meta and train.get("start_step") is None:
            start_step = int(meta["training_info"]["step"])
            print(f"Found step {start_step} in metadata, starting from there", flush=True)
    if train.get("start_step") is not None:
        start_step = int(train["start_step"])

    try:
        if sampling and train.get("skip_first_sample", False):
            print("Skipping first sample due to config setting", flush=True)
        elif sampling and (start_step <= 1 or train.get("force_first_sample", False)):
            print("Generating baseline samples before training", flush=True)
            write_samples(start_step)
        started = time.time()
        for step in range(start_step, steps):
            if behaviour["oom_at"] is not None and step >= behaviour["oom_at"]:
                print("Traceback (most recent call last):", flush=True)
                print('  File "run.py", line 120, in main', flush=True)
                print(
                    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. "
                    "GPU 0 has a total capacity of 23.55 GiB of which 1.02 GiB is free.",
                    flush=True,
                )
                print(
                    "Error running job: CUDA out of memory. Tried to allocate 2.00 GiB.", flush=True
                )
                return 1
            time.sleep(behaviour["step_s"])
            loss = 0.5 / (1 + step / 10) + 0.02
            if db is not None:
                db.execute("BEGIN")
                db.execute("INSERT OR REPLACE INTO steps VALUES (?, ?)", (step, time.time()))
                for key, value in (("loss/loss", loss), ("learning_rate", 1e-4)):
                    db.execute(
                        "INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, NULL)", (step, key, value)
                    )
                    db.execute(
                        "INSERT INTO metric_keys VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET"
                        " last_seen_step = excluded.last_seen_step",
                        (key, step, step),
                    )
                db.execute("COMMIT")
            done = step + 1
            elapsed = time.time() - started
            rate = (done - start_step) / elapsed if elapsed else 0.0
            left = (steps - done) / rate if rate else 0.0
            pct = int(100 * done / steps)
            sys.stderr.write(
                f"\r{name}: {pct:3d}%|{'#' * (pct // 10):10}| {done}/{steps} "
                f"[{clock(elapsed)}<{clock(left)}, {rate:.2f}it/s, lr: 1.0e-04 loss: {loss:.3e}]"
            )
            sys.stderr.flush()
            if step != start_step and step % save_every == 0:
                print(f"\nSaving at step {step}", flush=True)
                save_checkpoint(step)
            if sampling and step != start_step and step % sample_every == 0:
                write_samples(step)
        save_checkpoint(None)
        if sampling:
            write_samples(steps)
    except KeyboardInterrupt:
        print("\n========================================", flush=True)
        print("Job stopped", flush=True)
        print("========================================", flush=True)
        return 0
    print("\n========================================\nResult:\n - 1 completed job", flush=True)
    print("========================================", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
