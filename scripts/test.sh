#!/usr/bin/env bash
# Set up, then run the test suite on both cores. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${DETR_VENV:-.venv}"
exec "$VENV/bin/python" -m pytest -n 2 "$@"
