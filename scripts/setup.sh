#!/usr/bin/env bash
# Installs what bioplaus needs; safe to re-run.
#
#   bash scripts/setup.sh run    # what training needs (no torch): the main job
#   bash scripts/setup.sh test   # also what the tests need (torch, pytest, ...)
#
# Two things are needed:
# 1. Fashion-MNIST, the dataset of the main job and of the tests that use real
#    data. On Debian/Ubuntu the package dataset-fashion-mnist holds it (in
#    /usr/share/datasets/fashion-mnist/), so everything runs offline; it is
#    installed with apt-get, as root or through sudo. Without apt, put the four
#    files in ~/.cache/bioplaus/fashion-mnist/ (or in DIR/fashion-mnist/ and pass
#    --data-dir DIR, or set BIOPLAUS_DATA=DIR), or download them with
#    `bioplaus data fetch fashion-mnist`.
# 2. The Python packages of pyproject.toml, installed into the virtual
#    environment .venv of the checkout (created here; Debian's system Python
#    refuses `pip install` outside one: "externally-managed-environment"). The
#    environment sees the system's packages (--system-site-packages), so what
#    is installed already (torch, say) is not downloaded again. An environment
#    that is already active ($VIRTUAL_ENV) is used instead.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-test}"
case "$mode" in
  run) extras="" ;;
  test)
    # Everything the tests import: the test and plot extras, and the cluster
    # extra (ray, for the sweep tests) where pyproject.toml has one.
    extras="test,plot"
    if grep -q '^cluster *=' pyproject.toml; then extras="$extras,cluster"; fi ;;
  *) echo "usage: bash scripts/setup.sh [run|test]  (run: training only; test: also the test suite)" >&2
     exit 2 ;;
esac

say() { echo "setup: $*" >&2; }
fail() { echo "setup: error: $*" >&2; exit 1; }

# --------------------------------------------------------------- the data
system_dir="${BIOPLAUS_SYSTEM_DATASETS:-/usr/share/datasets}/fashion-mnist"
cache_dir="${BIOPLAUS_DATA:-$HOME/.cache/bioplaus}/fashion-mnist"
files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
have_all() { for f in $files; do [ -f "$1/$f" ] || [ -f "$1/${f%.gz}" ] || return 1; done; }

where_to_put="put the four Fashion-MNIST files ($files) in $cache_dir/
  (or in DIR/fashion-mnist/ and pass --data-dir DIR to bioplaus, or set BIOPLAUS_DATA=DIR),
  or download them with \`bioplaus data fetch fashion-mnist\` once the Python packages are installed
  (\`bash scripts/setup.sh $mode\` then finds them)"

if have_all "$system_dir"; then
  :
elif have_all "$cache_dir"; then
  say "Fashion-MNIST found in $cache_dir"
else
  say "needs Fashion-MNIST (the main job's dataset and the real-data tests'): not in $system_dir or $cache_dir;"
  say "installing Debian's package dataset-fashion-mnist with apt-get"
  if ! command -v apt-get >/dev/null 2>&1; then
    fail "apt-get not found (not a Debian/Ubuntu machine), so the package cannot be installed.
  Instead, $where_to_put"
  fi
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
  elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
    say "not root: running apt-get through sudo (it may ask for your password)"
  else
    fail "apt-get needs root: you are not root and sudo is not installed.
  Ask an administrator to run \`apt-get install dataset-fashion-mnist\`, or instead
  $where_to_put"
  fi
  $SUDO apt-get update -q || fail "\`${SUDO:+$SUDO }apt-get update\` failed (see above); instead, $where_to_put"
  $SUDO apt-get install -y -q dataset-fashion-mnist \
    || fail "\`${SUDO:+$SUDO }apt-get install dataset-fashion-mnist\` failed (see above); instead, $where_to_put"
fi

# ------------------------------------------------------ the Python packages
command -v python3 >/dev/null 2>&1 || fail "python3 not found: bioplaus needs Python >= 3.10"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || fail "bioplaus needs Python >= 3.10; python3 is $(python3 -V 2>&1)"
if [ -n "${VIRTUAL_ENV:-}" ]; then
  py="$VIRTUAL_ENV/bin/python"
  say "using the active virtual environment $VIRTUAL_ENV"
else
  py=".venv/bin/python"
  if [ ! -x "$py" ]; then
    say "creating the virtual environment .venv (sees the system's packages)"
    if ! python3 -m venv --system-site-packages .venv 2>/dev/null; then
      # Debian without python3-venv has no ensurepip: an environment without
      # its own pip still works with the system's pip (seen through
      # --system-site-packages), which then installs into the environment.
      rm -rf .venv
      python3 -m venv --system-site-packages --without-pip .venv \
        || fail "\`python3 -m venv\` failed: install python3-venv (Debian: apt-get install python3-venv)"
    fi
  fi
fi
"$py" -m pip --version >/dev/null 2>&1 \
  || fail "no pip for $py: install pip (Debian: apt-get install python3-pip python3-venv)"
target="."
[ -n "$extras" ] && target=".[$extras]"
say "installing bioplaus and its packages ($target) into $("$py" -c 'import sys; print(sys.prefix)')"
"$py" -m pip install -q --disable-pip-version-check -e "$target"
