#!/usr/bin/env bash
# The paper-setting runs of issue 21, in the order the issue asks for (within float64 convection, the L-BFGS runs
# first: whether float64 unfreezes L-BFGS is that family's question), as one of N workers (two on a 2-core CPU,
# one torch thread each, at the lowest priority). Resumable: a run already in the store is skipped, an unfinished
# one resumes from its checkpoint in ~/.cache/pinnkit (PINNKIT_CACHE). Run it from a clean checkout of a commit
# (records must name committed code) and merge the records into the repository's store afterwards:
#   git worktree add --detach /work/runs HEAD && cd /work/runs
#   tools/paper_runs.sh 0/2 & tools/paper_runs.sh 1/2 &
#   python -m pinnkit.experiments merge ~/.cache/pinnkit/runs.sqlite      # in the repository, then commit
# The cache lives on one machine, and the next session may get another. Before a session stops, run
#   tools/paper_runs.sh park                                              # in the repository, then commit
# to copy the checkpoints of the runs under way into results/parked/ (and remove the parked checkpoints of runs
# that the repository's store now holds) and the finished records the repository's store lacks into
# results/parked/pending.sqlite; a worker whose cache lacks a run's checkpoint starts from the parked one, and one
# without a store starts it as a copy of the repository's plus the pending records.
set -u
py=${PYTHON:-python}
cache=${PINNKIT_CACHE:-$HOME/.cache/pinnkit}
store=${STORE:-$cache/runs.sqlite}
parked=results/parked
if [ "${1:-}" = park ]; then
  mkdir -p "$parked"
  for f in "$cache"/checkpoints/*.pt; do
    [ -e "$f" ] && cp "$f" "$parked/" && echo "parked $(basename "$f")"
  done
  # a parked checkpoint whose run is stored (and need not be made again) has done its work; stored here means in
  # the repository's store or, finished but not merged yet, in the cache's (its record is parked below)
  "$py" - results/pinnkit.sqlite "$parked" "$store" <<'PY'
import sys
from pathlib import Path
from pinnkit.experiments import Store
stores = [Store(p) for p in (sys.argv[1], sys.argv[3]) if Path(p).is_file()]
for f in sorted(Path(sys.argv[2]).glob("*.pt")):
    records = [r for s in stores for r in s.records(key=f.stem)]
    if records and not records[-1].retry:
        f.unlink()
        print(f"removed {f.name}: {records[-1].name} is stored")
PY
  # records finished in the cache but not yet merged (the chapters not yet updated for them) travel too
  if [ -e "$store" ]; then
    "$py" - results/pinnkit.sqlite "$store" "$parked/pending.sqlite" <<'PY'
import sys
from pathlib import Path
from pinnkit.experiments import Store, _as_row
have = {(r.key, r.created) for r in Store(sys.argv[1]).records()}
pending = [r for r in Store(sys.argv[2]).records() if (r.key, r.created) not in have]
out = Path(sys.argv[3])
out.unlink(missing_ok=True)
if pending:
    parked = Store(out)
    for r in pending:
        parked.append(_as_row(r))
        print(f"parked the record of {r.name}: merge {out} into the repository's store with its chapters")
PY
  fi
  exit
fi
shard=${1:?usage: tools/paper_runs.sh K/N, or tools/paper_runs.sh park}
mkdir -p "$cache/checkpoints"
# on a new machine, start the store from the repository's, so that the runs it holds are skipped
if [ ! -e "$store" ]; then
  cp results/pinnkit.sqlite "$store"
  # and the records a session parked before merging them
  [ -e "$parked/pending.sqlite" ] && "$py" -m pinnkit.experiments merge --store "$store" "$parked/pending.sqlite"
fi
for f in "$parked"/*.pt; do  # a checkpoint parked by a session on another machine
  [ -e "$f" ] && [ ! -e "$cache/checkpoints/$(basename "$f")" ] && cp "$f" "$cache/checkpoints/"
done
queue=(
  "configs/rathore_table1.toml convection/"
  "configs/rathore_table1_float64.toml convection/lbfgs/"
  "configs/rathore_table1_float64.toml convection/adam+lbfgs/"
  "configs/rathore_table1_float64.toml convection/"
  "configs/rathore_table1.toml reaction/"
  "configs/rathore_table2_authors.toml table2-authors/"
  "configs/rathore_table2_control.toml table2-control/"
  "configs/rathore_table1_wave.toml wave/"
  "configs/rathore_table1_switch.toml table1-switch/"
)
for item in "${queue[@]}"; do
  set -- $item
  OMP_NUM_THREADS=1 nice -n 19 "$py" -m pinnkit.experiments run "$1" --only "$2" --shard "$shard" --threads 1 \
    --store "$store" || echo "paper_runs: $1 $2 ended with status $?" >&2
done
