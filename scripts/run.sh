#!/usr/bin/env bash
# Sets up SceneKV (first run: a venv with the CPU build of torch) and starts the service with its demo
# page on http://127.0.0.1:8765/ (HOST/PORT: pass --host/--port). Embedded defaults: local Ray, the
# Redis at REDIS_URL or 127.0.0.1:6379 (else a private redis-server child), the default checkpoint or,
# offline, SceneKV's world model (trained on the synthetic world, with a banner). A world video is offered as
# file:sample.mp4 (media root ~/.cache/scenekv/media); the page also takes your own file or webcam.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
media=${SCENEKV_MEDIA:-$HOME/.cache/scenekv/media}
mkdir -p "$media"
if [ ! -s "$media/sample.mp4" ] || [ ! -s "$media/sample.json" ]; then
  # a world video (what the offline world model knows), with its ground truth in sample.json
  scenekv make-world "$media/sample.mp4" --seed 32 --duration 60 >/dev/null
fi
echo "SceneKV: open http://127.0.0.1:8765/ once the service says it is ready (Ctrl-C stops it)"
exec scenekv serve --media-root "$media" "$@"
