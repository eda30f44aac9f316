"""Crash safety: kill the server with SIGKILL at random moments, restart it, check nothing is lost.

Each trial starts `atelier serve` on one data folder (the same across trials, so damage would
accumulate), runs caption saves, uploads, exports and a drafting job against it at once, kills
it at a random moment, and checks, before and after restarting it:

- `PRAGMA integrity_check` is ok and no foreign key dangles;
- every caption save the server acknowledged (200) is there, revision and text;
- every upload it acknowledged is there, bytes intact;
- an interrupted drafting job is resumed by the restarted server (it moves on or finishes);
- no half-written export is visible: every export folder has a manifest whose files all exist
  with their checksums (staging folders are hidden, and removed by the next export);
- every stored image's bytes exist; bytes no image references are only those the app's own
  garbage collection removes (written by an upload whose rows never committed);
- no process the server started outlives it (its decode pool, the pool's forkserver).

    python bench/crash.py [--trials 100] [--seed 1] [--keep DIR]

The harness is tests/support/crash.py. Drafting uses a tiny random Qwen2-VL on the CPU
(built offline). Exits 1 on any violation.
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
