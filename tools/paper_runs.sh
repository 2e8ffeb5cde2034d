#!/usr/bin/env bash
# The paper-setting runs of issue 21, in the order the issue asks for (within float64 convection, the L-BFGS runs
# first: whether float64 unfreezes L-BFGS is that family's question), as one of N workers (two on a 2-core CPU,
# one torch thread each, at the lowest priority). Resumable: a run already in the store is skipped, an unfinished
# one resumes from its checkpoint in ~/.cache/pinnkit (PINNKIT_CACHE). Run it from a clean checkout of a commit
# (records must name committed code) and merge the records into the repository's store afterwards:
#   git worktree add --detach /work/runs HEAD && cd /work/runs
#   tools/paper_runs.sh 0/2 & tools/paper_runs.sh 1/2 &
#   python -m pinnkit.experiments merge ~/.cache/pinnkit/runs.sqlite      # in the repository, then commit
set -u
shard=${1:?usage: tools/paper_runs.sh K/N}
py=${PYTHON:-python}
store=${STORE:-${PINNKIT_CACHE:-$HOME/.cache/pinnkit}/runs.sqlite}
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
