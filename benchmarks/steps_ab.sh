#!/usr/bin/env bash
# A/B of whole training steps between two commits on this machine, alternated so that
# drift in the machine's load falls on both sides:
#   benchmarks/steps_ab.sh BASE_DIR MAIN_DIR > out/ab.txt
# BASE_DIR and MAIN_DIR are checkouts (e.g. `git worktree add /tmp/base f1f5251`); each side
# runs `bioplaus bench steps` from its own directory with the Python of $PY (default
# .venv/bin/python of the current directory). Sides: mlp (15 repeats), vgg8b (3 repeats),
# then vgg8b pred-bio without PyTorch four times (base, main, main, base; 7 repeats).
set -uo pipefail
BASE=${1:?usage: steps_ab.sh BASE_DIR MAIN_DIR}
MAIN=${2:?usage: steps_ab.sh BASE_DIR MAIN_DIR}
PY=${PY:-$PWD/.venv/bin/python}
RULES=predsim,pred-bio,backprop
side() { # name dir args...
  local name=$1 dir=$2; shift 2
  local sha; sha=$(git -C "$dir" rev-parse HEAD)
  echo "## $name"
  echo "# recorded output (ours): this machine's CPU ($(nproc) cores), commit $sha ($name), nothing else running but this A/B"
  echo "# command: bioplaus bench steps $*"
  local t0=$SECONDS
  (cd "$dir" && PYTHONPATH="$dir" "$PY" -m bioplaus bench steps "$@" 2>&1)
  echo "# wall time $((SECONDS - t0)) s"
  echo
}
echo "# A/B: base = $(git -C "$BASE" rev-parse HEAD), main = $(git -C "$MAIN" rev-parse HEAD); started $(date -u '+%Y-%m-%d %H:%M UTC'); $(uptime)"
side base-mlp "$BASE" --nets mlp --rules $RULES --repeats 15
side main-mlp "$MAIN" --nets mlp --rules $RULES --repeats 15
side base-vgg8b "$BASE" --nets vgg8b --rules $RULES --repeats 3
side main-vgg8b "$MAIN" --nets vgg8b --rules $RULES --repeats 3
for s in base main main base; do
  d=$MAIN; [ $s = base ] && d=$BASE
  side "$s-vgg8b-pred-bio-notorch" "$d" --nets vgg8b --rules pred-bio --repeats 7 --no-torch
done
echo "# finished $(date -u '+%Y-%m-%d %H:%M UTC'); $(uptime)"
