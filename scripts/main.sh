#!/usr/bin/env bash
# The main job of the README: set up (training only, no torch), then train mlp
# 3x1024 with predsim on the full Fashion-MNIST (offline, Debian's copy) for
# 2 epochs on the CPU and print its test error. Extra arguments go to
# `bioplaus train` (e.g. --epochs 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh run
bin="${VIRTUAL_ENV:-.venv}/bin"
exec "$bin/bioplaus" train --dataset fashion-mnist --net mlp --rule predsim --nonlin leakyrelu \
  --dropout 0.025 --epochs 2 --lr-decay-milestones 100,150,175,188 \
  --out out/main-fashion-mnist-mlp-predsim --overwrite "$@"
