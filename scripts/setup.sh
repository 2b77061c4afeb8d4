#!/usr/bin/env bash
# Installs everything bioplaus needs on a fresh Debian machine; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q dataset-fashion-mnist
fi
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[test,plot]"
