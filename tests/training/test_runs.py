"""Reading run folders: names, partial and broken files, the config that ran, loss, the log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.captions.schema import Style
from app.export import config_yaml
from app.training import runs
from app.training.config import for_training
from tests.training.runfolders import make_run


def test_parse_sample_names_as_the_trainer_writes_them() -> None:
    s = runs.parse_sample_name("1763563000704__000004000_12.jpg")
    assert s is not None and (s.time_ms, s.step, s.index) == (1763563000704, 4000, 12)
    for other in ("1763563000704_000004000_1.jpg", "x__000004000_1.jpg", "1__000004000_1.txt"):
        assert runs.parse_sample_name(other) is None


def test_samples_skip_partial_empty_and_foreign_files(tmp_path: Path) -> None:
    run = make_run(tmp_path / "aitk", steps=20)
    samples = tmp_path / "aitk" / "output" / "by_hand" / "samples"
    before = len(runs.list_samples(run))
    assert before == 3 * 4  # steps 0, 10, 20 x four samples
    (samples / ".tmp" / "1__000000030_0.jpg").write_bytes(b"half a jpeg")
    (samples / "1__000000030_1.jpg").write_bytes(b"")
    (samples / "notes.txt").write_text("mine")
    assert len(runs.list_samples(run)) == before


def test_the_config_that_ran_comes_first(tmp_path: Path) -> None:
    run = make_run(tmp_path / "aitk")
    assert runs.read_config(run).source == "config.yaml"  # type: ignore[union-attr]
    sample = {"samples": [{"prompt": "from the UI"}], "seed": 7, "walk_seed": True}
    process = {"train": {"steps": 30}, "save": {"save_every": 10}, "sample": sample}
    job_config = {"config": {"name": "by_hand", "process": [process]}}
    (run / ".job_config.json").write_text(json.dumps(job_config))
    cfg = runs.read_config(run)
    assert cfg is not None and cfg.source == ".job_config.json"
    assert cfg.samples[0].prompt == "from the UI" and cfg.samples[0].seed == 7
    recorded = (
        "config:\n  name: by_hand\n  process:\n    - sample:\n"
        "        samples:\n          - prompt: recorded\n"
    )
    cfg = runs.read_config(run, recorded)
    assert cfg is not None and cfg.samples[0].prompt == "recorded"


def test_loss_is_read_without_writing_to_the_run(tmp_path: Path) -> None:
    run = make_run(tmp_path / "aitk", steps=30)
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    points = runs.loss_points(run)
    assert [s for s, _ in points] == list(range(30))
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
    assert len(runs.loss_points(run, most=10)) == 10


def test_progress_from_the_trainers_bar() -> None:
    log = (
        "Running 1 job\n\rbaroque:   1%|          | 12/2500 [00:10<34:33,  1.20it/s, lr: 1.0e-04 "
        "loss: 4.512e-01]\rbaroque:   1%|          | 13/2500 [00:11<41:40,  1.01s/it, lr: 1.0e-04 "
        "loss: 4.000e-01]"
    )
    p = runs.read_progress(log)
    assert p is not None and (p.step, p.total) == (13, 2500)
    assert p.rate is not None and abs(p.rate - 1 / 1.01) < 1e-6
    assert p.eta_s == 41 * 60 + 40 and p.loss == 0.4
    assert runs.read_progress("Loading model\nCaching latents: 100%|##| 3/3 [00:01<00:00]") is None
    sampling = log + "\nGenerating Images:  40%|####  | 6/15 [00:10<00:15,  1.70s/it]"
    assert runs.read_progress(sampling).step == 6  # type: ignore[union-attr]
    p = runs.read_progress(sampling, total=2500)
    assert p is not None and (p.step, p.total) == (13, 2500)


def test_why_it_died_in_one_sentence() -> None:
    oom = "Traceback\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB\n"
    assert runs.why_it_died(oom, smaller_profile="16gb") == (
        "The GPU ran out of memory: pick the 16gb profile (it uses less GPU memory) and train "
        "again."
    )
    assert "smallest profile" in runs.why_it_died(oom, smaller_profile=None)
    missing = "ModuleNotFoundError: No module named 'torch'\n"
    assert "lacks the module 'torch'" in runs.why_it_died(missing, smaller_profile=None)
    assert runs.why_it_died("", smaller_profile=None).endswith("wrote nothing to its log.")


def test_for_training_turns_sampling_on_and_keeps_every_save() -> None:
    exported = config_yaml.write(
        slug="baroque", resolution=1024, trigger_word="bcs", style=Style(aesthetics="dark"),
        captions=[], sizes=[(1024, 1024)] * 30, folder_path="/x", profile="24gb",
        placement="aesthetics",
    ).text  # fmt: skip
    assert "disable_sampling: true" in exported and "skip_first_sample: false" in exported
    text, plan = for_training(exported, save_every=500)
    assert (plan.steps, plan.save_every, plan.keep) == (2500, 500, 6)
    for line in (
        "disable_sampling: false  # Atelier's board",
        "skip_first_sample: false  # step 0 is the model before training",
        "max_step_saves_to_keep: 6  # every save is kept",
        "sample_every: 500  # samples at every save",
        "save_every: 500",
    ):
        assert line in text, line
    assert "sampling is off" not in text.lower()
    assert "The guide's validation plan" in text and "every save when training from" in text
    assert text.count('"high_level_description"') == exported.count('"high_level_description"')
    cfg = runs.read_config(Path("/nowhere"), text)
    assert cfg is not None and len(cfg.samples) == 63 and cfg.samples[0].multiplier == 0.5


def test_gpu_memory_from_nvidia_smi_when_there_is_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app import gpu

    monkeypatch.setattr(gpu, "_cache", None)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi: the figure is left out
    assert gpu.memory_in_use() is None
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '17612, 24564'\n")
    smi.chmod(0o755)
    monkeypatch.setattr(gpu, "_cache", None)
    assert gpu.memory_in_use() == "17.2 of 24.0 GB"
    gpu.local_gpu_gb.cache_clear()
    assert gpu.local_gpu_gb() == pytest.approx(24564 / 1024)  # what the export page picks by
    gpu.local_gpu_gb.cache_clear()
