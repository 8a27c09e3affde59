#!/usr/bin/env bash
# Creates (or reuses) the virtual environment and installs the project into it.
# DETR_VENV picks the folder (default .venv in the repository); PYTHON the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${DETR_VENV:-.venv}"
PYTHON="${PYTHON:-python3.11}"
DEPS_HASH=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.detr-deps" 2>/dev/null)" != "$DEPS_HASH" ]; then
    echo "setting up $VENV (a few minutes the first time)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    # torch first, pinned: pip takes it from this machine's local copy instead of downloading.
    "$VENV/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
    "$VENV/bin/pip" install -q -e ".[test]"
    echo "$DEPS_HASH" > "$VENV/.detr-deps"
else
    # A cached environment may come from another checkout: point it at this one.
    "$VENV/bin/pip" install -q --no-deps -e . >/dev/null
fi
