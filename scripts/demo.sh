#!/usr/bin/env bash
# The main job: set up, then train the small DETR on the built-in dataset,
# evaluate it (COCO AP) and draw its detections. Extra arguments go to `detr train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${DETR_VENV:-.venv}"
exec "$VENV/bin/detr" train --out runs/demo "$@"
