"""Crash safety, the long run: SIGKILL the server at random moments, restart it, check that
nothing is lost, for as many trials as asked. What each trial does and checks is written at
the top of the harness, tests/support/crash.py (tests/hardening/test_crash.py runs 3 trials).

    python bench/crash.py [--trials 100] [--seed 1] [--keep DIR]

Drafting uses a tiny random Qwen2-VL on the CPU (built offline). Exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.crash import run_trials  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", type=Path, default=None, help="work here and keep it")
    ap.add_argument("--no-drafting", action="store_true")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="atelier-crash-"))
    model = None
    if not args.no_drafting:
        from tests.support.random_model import save

        model = save(root / "tiny-qwen2-vl", family="qwen2_vl")
    results = run_trials(
        args.trials,
        seed=args.seed,
        root=root,
        model=model,
        on_trial=lambda r: print(json.dumps(r), flush=True),
    )
    bad = [r for r in results if r["problems"]]
    print(
        json.dumps(
            {
                "trials": len(results),
                "with_problems": len(bad),
                "acked_saves": sum(r["acked_saves"] for r in results),
                "acked_uploads": sum(r["acked_uploads"] for r in results),
                "exports": sum(r["exports"] for r in results),
                "drafting_trials": sum(r["drafting"] for r in results),
            }
        )
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
