#!/usr/bin/env bash
# Makes sure the system tools the test suite drives are here: ffmpeg (synthetic videos, the decode
# benchmark), redis-server (a real Redis; some tests start their own), chromium (the browser test,
# through playwright without a browser download) and docker-compose (validates docker-compose.yml;
# no engine needed). Installs what is missing with apt-get when it can (root, or sudo without a
# password); otherwise names the missing packages and exits 1.
set -euo pipefail
need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v redis-server >/dev/null || need+=(redis-server)
command -v chromium >/dev/null || need+=(chromium)
command -v docker-compose >/dev/null || need+=(docker-compose)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "scenekv tests need: ${need[*]}; install them (apt-get install -y ${need[*]}) and run again" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "scenekv tests need: ${need[*]}; this is not a Debian system: install them with its package manager" >&2
  exit 1
fi
echo "system: installing ${need[*]} (apt-get)"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
