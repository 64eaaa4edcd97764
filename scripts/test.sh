#!/usr/bin/env bash
# The README's test command, complete on a fresh machine: system tools (apt-get), the venv, a Redis
# that answers, then ruff and the whole suite. A test whose tool is missing fails, never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh
bash scripts/ensure-redis.sh
. .venv/bin/activate
ruff check .
python -m pytest "$@"
