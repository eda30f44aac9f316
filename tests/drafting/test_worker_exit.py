"""The drafting process, run for real: it exits cleanly when it has been idle long enough."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from app.config import Settings, child_environment
from app.db import make_engine, migrate

ROOT = Path(__file__).resolve().parents[2]


def test_the_drafting_process_exits_cleanly_when_idle(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", draft_idle_exit_s=0.2)
    settings.prepare_dirs()
    db = make_engine(settings)
    migrate(db)
    db.dispose()
    env = child_environment(PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.drafting.worker"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stderr is not None
    # As the server does: the settings, then a wake, and stdin left open (the server lives on).
    proc.stdin.write(json.dumps(settings.model_dump(mode="json")).encode() + b"\n")
    proc.stdin.flush()
    proc.stdin.write(b"\n")
    proc.stdin.flush()
    try:
        code = proc.wait(60)
    finally:
        proc.kill()
    stderr = proc.stderr.read().decode()
    proc.stdin.close()
    # It used to abort at interpreter shutdown on the stdin reader's lock (status -6).
    assert "Fatal Python error" not in stderr
    assert code == 0, stderr
