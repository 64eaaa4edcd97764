#!/usr/bin/env bash
# Sets up SceneKV (first run: a venv with the CPU build of torch) and runs the main job on a sample
# video it generates: sample frames with exact timestamps, then encode them into carrier KV with the
# default model (the tiny random model, with a loud banner, when the hub cannot be reached).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
sample=${SCENEKV_SAMPLE:-$HOME/.cache/scenekv/sample.mp4}
if [ ! -s "$sample" ]; then
  mkdir -p "$(dirname "$sample")"
  scenekv make-video "$sample" --duration 24 --cuts 8,16
fi
scenekv frames "$sample" --fps 1
scenekv inspect "$sample" --fps 1 --carriers pool:16 "$@"
