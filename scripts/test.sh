#!/usr/bin/env bash
# The test command of the README (and of CI): set up for the tests, then run
# the whole suite in the checkout's virtual environment. Extra arguments go to
# pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
py="${VIRTUAL_ENV:-.venv}/bin/python"
exec "$py" -m pytest "$@"
