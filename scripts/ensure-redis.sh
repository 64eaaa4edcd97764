#!/usr/bin/env bash
# Makes sure a Redis answers at REDIS_URL (default redis://127.0.0.1:6379/0); starts a local one if not.
set -euo pipefail
url=${REDIS_URL:-redis://127.0.0.1:6379/0}
hostport=${url#redis://}; hostport=${hostport%%/*}; hostport=${hostport##*@}
host=${hostport%%:*}; port=${hostport##*:}; [ "$port" = "$host" ] && port=6379
ping() { (exec 3<>"/dev/tcp/$host/$port" && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
if ping; then echo "redis: answering at $host:$port"; exit 0; fi
if ! command -v redis-server >/dev/null; then
  echo "redis: not installed, installing redis-server from Debian"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
mkdir -p /tmp/scenekv-redis
redis-server --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no \
  --dir /tmp/scenekv-redis --logfile /tmp/scenekv-redis/redis.log
for _ in $(seq 50); do ping && { echo "redis: started at $host:$port"; exit 0; }; sleep 0.1; done
echo "redis: could not start at $host:$port (see /tmp/scenekv-redis/redis.log)" >&2
exit 1
