#!/usr/bin/env bash
# The demo command: sets up (idempotently), then runs torch2mlx on a model it builds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
