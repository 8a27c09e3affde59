#!/usr/bin/env bash
# The main job: set up, then train the default (fast_fine) small DETR on the built-in dataset
# for 10 minutes, evaluate it (COCO AP) and draw its detections. Extra arguments go to
# `detr train` (a later --minutes wins; --epochs N adds a bound, whichever ends first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${DETR_VENV:-.venv}"
exec "$VENV/bin/detr" train --out runs/demo --minutes 10 "$@"
