#!/usr/bin/env bash
# Sets up the environment if needed, makes sure Redis answers, runs ruff and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/ensure-redis.sh
. .venv/bin/activate
ruff check .
python -m pytest "$@"
