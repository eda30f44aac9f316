"""The short version of bench/crash.py: a real server killed with SIGKILL mid-work, restarted,
and checked (database integrity, acknowledged saves and uploads, drafting resumed, exports
never half-visible, store explained). The bench runs 100 trials; this runs 3."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.crash import run_trials


@pytest.mark.slow
def test_sigkill_mid_work_loses_nothing_acknowledged(tmp_path: Path) -> None:
    from tests.support.random_model import save

    model = save(tmp_path / "tiny-qwen2-vl", family="qwen2_vl")
    results = run_trials(3, seed=11, root=tmp_path / "run", model=model, training=True)
    problems = [p for r in results for p in r["problems"]]
    assert not problems, problems
    # The trials did work before each kill, or the checks above would prove nothing.
    assert sum(r["acked_saves"] for r in results) > 10, results
    assert sum(r["acked_uploads"] for r in results) > 0, results
    assert any(r["drafting"] for r in results), results
    assert any(r["training"] for r in results), results  # a trainer outlived a kill
