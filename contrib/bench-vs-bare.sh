#!/usr/bin/env bash
# confab against the bare broadcast server (crates/confab/examples/
# bare_broadcast.rs), in one run, as docs/performance.md compares them:
# each server alone on core 0, the bench on core 1, both in prioritised
# autogroups, 20 s of posting with 100-byte bodies, the two servers
# alternating on each rung, ROUNDS times (2 by default). A single node
# keeps ephemeral rooms in memory, so the database does not enter in it.
#
#   cargo build --release -p confab --bin confab --example bare_broadcast
#   contrib/bench-vs-bare.sh
#
# Each line: rung, server, deliveries, loss, duplicates, out of order,
# p50 / p99 / p99.9 (ms), CPU per 1,000 deliveries (ms), RSS (MB). The
# bench's JSON of each run is kept in $OUT.
set -u
OUT=${OUT:-/tmp/confab-vs-bare}
mkdir -p "$OUT"
BIN=${BIN:-target/release/confab}
BARE=${BARE:-target/release/examples/bare_broadcast}
ROUNDS=${ROUNDS:-2}
# rooms members interval(ms)
RUNGS=${RUNGS:-"1000 10 1000;200 50 1000;1000 10 500"}
ADDR=127.0.0.1:18084

run() { # server rooms members interval round
  local server=$1 rooms=$2 members=$3 interval=$4 round=$5 pid
  rm -rf "$OUT/data"
  if [ "$server" = confab ]; then
    setsid -w sh -c 'echo -20 > /proc/self/autogroup 2>/dev/null; exec taskset -c 0 "$0" serve --http "$1" --data "$2"' \
      "$BIN" "$ADDR" "$OUT/data" > "$OUT/server.log" 2>&1 &
  else
    setsid -w sh -c 'echo -20 > /proc/self/autogroup 2>/dev/null; exec taskset -c 0 "$0" "$1"' \
      "$BARE" "$ADDR" > "$OUT/server.log" 2>&1 &
  fi
  pid=$!
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/${ADDR%:*}/${ADDR#*:}) 2>/dev/null && break
    sleep 0.1
  done
  local json="$OUT/$server-$rooms-$members-$interval-$round.json"
  setsid -w sh -c 'echo -20 > /proc/self/autogroup 2>/dev/null; exec taskset -c 1 "$0" bench --url "ws://$1/ws" \
      --server-pid "$2" --rooms "$3" --members "$4" --interval "$5" --duration 20 --size 100 --json' \
    "$BIN" "$ADDR" "$pid" "$rooms" "$members" "$interval" > "$json" 2> "$OUT/bench.err"
  kill "$pid"; wait "$pid" 2>/dev/null
  python3 - "$json" "$server" "$rooms x $members, every $interval ms" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
l, s = b['latency_ms'], b['server']
print(f"{sys.argv[3]} | {sys.argv[2]} | {b['deliveries']}, {b['loss']}, {b['duplicates']}, "
      f"{b['out_of_order']} | {l['p50']:.0f} / {l['p99']:.0f} / {l['p99_9']:.0f} ms | "
      f"{s['cpu_ms_per_1000_deliveries']:.2f} ms | {s['rss_bytes'] / 1e6:.0f} MB", flush=True)
PY
}

for round in $(seq 1 "$ROUNDS"); do
  IFS=';' read -ra rungs <<< "$RUNGS"
  for rung in "${rungs[@]}"; do
    read -r rooms members interval <<< "$rung"
    if [ $((round % 2)) = 1 ]; then order="confab bare"; else order="bare confab"; fi
    for server in $order; do run "$server" "$rooms" "$members" "$interval" "$round"; done
  done
done
