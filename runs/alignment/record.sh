#!/bin/bash
# The recorded alignment result (runs/alignment/): cost measurement, then every rule
# on Fashion-MNIST mlp over a shortened schedule with --log-alignment, then
# `bioplaus align` (float64) on each run's final checkpoint.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
O=out/alignment
mkdir -p $O
echo "commit $(git rev-parse HEAD) $(git status --porcelain --untracked-files=no | wc -l) modified" > $O/commit.txt
date -u +%s > $O/t_start
SCHED="--epochs 1 --train-subset 12800 --test-subset 2000 --no-progress"
# 1. cost: mlp predsim, 100 steps, without / with --log-alignment 100 / 10
for N in 0 100 10; do
  rm -rf $O/cost-N$N
  /usr/bin/time -f "%e" -o $O/cost-N$N.time python3 -m bioplaus train --recipe runs/fashion-mnist/mlp-predsim.toml $SCHED --log-alignment $N --out $O/cost-N$N > $O/cost-N$N.out 2>&1
done
date -u +%s > $O/t_cost
# 2. every rule
for R in backprop fa pred sim predsim pred-bio sim-bio predsim-bio glob+sim frc-sym frc-sign frc-random frc-trainable; do
  if [ -f runs/fashion-mnist/mlp-$R.toml ]; then REC="--recipe runs/fashion-mnist/mlp-$R.toml"; else REC="--recipe runs/fashion-mnist/mlp-predsim.toml --rule $R"; fi
  rm -rf $O/mlp-$R
  echo "bioplaus train $REC $SCHED --log-alignment 10 --out $O/mlp-$R" >> $O/commands.txt
  python3 -m bioplaus train $REC $SCHED --log-alignment 10 --out $O/mlp-$R > $O/mlp-$R.train.out 2>&1
  echo "bioplaus align $O/mlp-$R --batches 4 --json" >> $O/commands.txt
  python3 -m bioplaus align $O/mlp-$R --batches 4 --json > $O/mlp-$R.align.json 2> $O/mlp-$R.align.err
  date -u +%s > $O/t_$R
done
date -u +%s > $O/t_end
echo done > $O/DONE
