"""Run folders made by the stand-in trainer from a hand-written config, as a run started
outside Atelier (AI-Toolkit's UI, or by hand) would be."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.training.conftest import make_checkout

PROMPTS = [
    json.dumps(
        {
            "high_level_description": "A lighthouse on a cliff at dusk.",
            "style_description": {"aesthetics": "[trigger], tenebrist"},
            "compositional_deconstruction": {
                "background": "a stormy sea",
                "elements": [{"type": "obj", "bbox": [100, 400, 900, 600], "desc": "a lighthouse"}],
            },
        }
    ),
    "a plain text prompt of a cat",
]


def run_config(
    name: str,
    *,
    steps: int = 30,
    save_every: int = 10,
    keep: int = 5,
    prompts: list[str] | None = None,
) -> dict[str, Any]:
    samples = [
        {"prompt": p, "network_multiplier": m, "seed": 42}
        for p in (prompts or PROMPTS)
        for m in (0.5, 1.0)
    ]
    return {
        "job": "extension",
        "config": {
            "name": name,
            "process": [
                {
                    "type": "diffusion_trainer",
                    "training_folder": "output",
                    "save": {"save_every": save_every, "max_step_saves_to_keep": keep},
                    "train": {
                        "steps": steps,
                        "skip_first_sample": False,
                        "disable_sampling": False,
                    },
                    "logging": {"use_ui_logger": True},
                    "sample": {
                        "sample_every": save_every,
                        "width": 512,
                        "height": 512,
                        "samples": samples,
                    },
                }
            ],
        },
    }


def make_run(root: Path, name: str = "by_hand", **kw: Any) -> Path:
    """Runs the stand-in trainer to the end on a config of ours; the run folder it wrote."""
    checkout = root if (root / "run.py").exists() else make_checkout(root)
    config = run_config(name, **kw)
    (checkout / "config").mkdir(exist_ok=True)
    buf = io.StringIO()
    YAML().dump(config, buf)
    (checkout / "config" / f"{name}.yaml").write_text(buf.getvalue())
    subprocess.run(
        [sys.executable, "run.py", f"config/{name}.yaml"],
        cwd=checkout,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return checkout / "output" / name
