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
case " $* " in *" --no-token "* | *" --token"*) SCENEKV_NO_TOKEN=${SCENEKV_NO_TOKEN:-flag} ;; esac
if [ -z "${SCENEKV_TOKEN:-}" ] && [ -z "${SCENEKV_NO_TOKEN:-}" ]; then
  # the page's token (SCENEKV_NO_TOKEN=1 serves without one); in the environment, not on a command line
  SCENEKV_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(24))')
  export SCENEKV_TOKEN
fi
if [ "${SCENEKV_NO_TOKEN:-}" = flag ]; then unset SCENEKV_NO_TOKEN; fi  # the flag given decides
echo "SceneKV: open http://127.0.0.1:8765/${SCENEKV_TOKEN:+?token=$SCENEKV_TOKEN} once the service says it is ready (Ctrl-C stops it)"
exec scenekv serve --media-root "$media" "$@"
