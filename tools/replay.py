"""Keep the parameters of a stored run at one step: make the run again (records keep no parameters) with
:func:`pinnkit.experiments.replay` and save them, with their provenance, under ``results/replays/``.

    python tools/replay.py table1-authors/wave/lbfgs/seed=234 150

Run it from a clean checkout (the file names the commit); the chapters read the file (``torch.load(path,
weights_only=True)``), they do not replay. A replay that does not log the record's losses bit for bit is refused:
its parameters would not be the record's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from pinnkit import experiments

ROOT = Path(__file__).resolve().parents[1]


def path_of(name: str, steps: int) -> Path:
    """Where the parameters of run ``name`` after ``steps`` steps are kept (in this checkout)."""
    return experiments.replay_path(name, steps, ROOT / "results" / "replays")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name", help="a record's name in results/pinnkit.sqlite")
    ap.add_argument("steps", type=int, help="how many of its steps to make again")
    args = ap.parse_args(argv)
    records = experiments.stored(args.name)
    if len(records) != 1:
        print(f"expected one record named {args.name!r} in the repository's store, found {len(records)}")
        return 1
    record = records[0]
    provenance = experiments._provenance()
    if "+dirty" in provenance["git_commit"]:
        print("refused: commit the code first (the file names the commit that made it)")
        return 1
    again = experiments.replay(record, args.steps, quiet=False)
    print(f"{again.matched} of {again.compared} logged losses equal the record's, bit for bit")
    if again.matched != again.compared or again.compared == 0:
        print("refused: the replay parted from the record (another processor or other code)")
        return 1
    out = path_of(args.name, args.steps)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"name": args.name, "record_id": record.id, "steps": args.steps, "theta": again.theta,
                "matched": again.matched, "compared": again.compared, "git_commit": provenance["git_commit"],
                "machine": experiments.machine(), "torch_version": str(torch.__version__)}, out)
    print(f"saved {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
