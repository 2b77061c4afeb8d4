#!/usr/bin/env bash
# Every GPU check in one command, for a machine with an NVIDIA GPU and CuPy:
#
#   bash scripts/gpu-check.sh            # tests, steps benchmark, profile
#   bash scripts/gpu-check.sh --quick    # fewer repeats (a short lent session)
#
# 1. the test cases that need CuPy (pytest -m gpu: every op, loss and
#    optimizer on CuPy against NumPy, the fast wing against the reference);
# 2. `bioplaus bench steps --device gpu` (vgg8b and mlp; predsim, pred-bio,
#    backprop; against the PyTorch CUDA formulation when torch sees the GPU);
# 3. `bioplaus bench profile --device gpu` (vgg8b predsim: each op's device time).
#
# Each part's output goes to runs/bench/<gpu>-<part>-<commit>.txt, headed by
# the command, the commit, the GPU and the wall time. An existing file is
# never overwritten (a part whose file exists is skipped, saying so). A part
# that fails is recorded too, and the script goes on with the next one; its
# exit status is 1 when any part failed.
set -uo pipefail
cd "$(dirname "$0")/.."

quick=0
case "${1:-}" in
  "") ;;
  --quick) quick=1 ;;
  *) echo "usage: bash scripts/gpu-check.sh [--quick]" >&2; exit 2 ;;
esac

py="${VIRTUAL_ENV:-.venv}/bin/python"
[ -x "$py" ] || py=python3

say() { echo "gpu-check: $*" >&2; }

if ! command -v nvidia-smi >/dev/null 2>&1; then
  say "error: nvidia-smi not found: this machine has no NVIDIA GPU (or no driver); nothing to check"
  exit 1
fi
if ! "$py" -c "import cupy; cupy.cuda.runtime.getDeviceCount()" >/dev/null 2>&1; then
  say "error: CuPy cannot use the GPU with $py; install it with"
  say "  $py -m pip install -e '.[gpu]'    (the cupy-cuda12x wheel; pick the one matching the CUDA driver)"
  exit 1
fi

gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
# "NVIDIA H200" -> "h200", "NVIDIA A100-SXM4-80GB" -> "a100-sxm4-80gb"
tag=$(echo "$gpu_name" | sed -e 's/^NVIDIA //' | tr 'A-Z' 'a-z' | tr -c 'a-z0-9\n' '-' | sed -e 's/--*/-/g' -e 's/-$//')
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=""
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && dirty=" (with uncommitted changes)"
mkdir -p runs/bench

if [ "$quick" -eq 1 ]; then steps_repeats=5; profile_steps=3; else steps_repeats=10; profile_steps=5; fi

failed=0
part() {  # part NAME COMMAND...
  local name=$1; shift
  local file="runs/bench/${tag}-${name}-${commit}.txt"
  if [ -e "$file" ]; then
    say "$file exists; not overwriting it (skipping $name)"
    return
  fi
  say "$name: $* -> $file"
  local start end rc
  start=$(date +%s)
  {
    echo "# command: $*"
    echo "# commit: $commit$dirty"
    echo "# machine: $gpu_name ($(nproc) CPU cores)"
    echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
  } > "$file.part"
  "$@" >> "$file.part" 2>&1
  rc=$?
  end=$(date +%s)
  {
    echo
    echo "# exit status: $rc"
    echo "# wall time: $((end - start)) s"
  } >> "$file.part"
  mv "$file.part" "$file"
  if [ "$rc" -ne 0 ]; then
    failed=1
    say "$name failed (exit $rc); see $file"
  fi
}

part tests "$py" -m pytest -q -m gpu -p no:cacheprovider
part steps "$py" -m bioplaus bench steps --device gpu --nets vgg8b,mlp \
  --rules predsim,pred-bio,backprop --repeats "$steps_repeats"
part profile "$py" -m bioplaus bench profile --device gpu --net vgg8b --rule predsim \
  --steps "$profile_steps"

say "done: runs/bench/${tag}-*-${commit}.txt"
exit "$failed"
