#!/usr/bin/env bash
# Redis's CPU per post of a cluster node, as docs/performance.md measures
# it: fresh redis-servers (SHARDS of them, 1 by default), one node on core
# 0 (PostgreSQL at 127.0.0.1:5432, trust, a database made for the run),
# the bench on core 1 (1,000 rooms x 10 members, 1 post/s each, 20 s,
# 100-byte bodies), and each Redis's utime + stime sampled every second
# from /proc; the figure is the slope from 3 s into the posting to 2 s
# before its end, per post. It prints each shard's share of a core, the
# sum per post, and the node's own CPU per 1,000 deliveries.
#
#   BIN=target/release/confab contrib/redis-cpu-per-post.sh
#   SHARDS=3 BIN=target/release/confab contrib/redis-cpu-per-post.sh
set -u
export OUT=${OUT:-/tmp/confab-bench}
mkdir -p "$OUT"
BIN=${BIN:-target/release/confab}
SHARDS=${SHARDS:-1}
BASE=$((16380 + RANDOM % 500))
REDIS=()
URLS=
for i in $(seq 1 "$SHARDS"); do
  port=$((BASE + i))
  redis-server --bind 127.0.0.1 --port $port --save "" --appendonly no > "$OUT/redis$i.log" 2>&1 &
  REDIS+=($!)
  URLS=${URLS:+$URLS,}redis://127.0.0.1:$port
done
for i in $(seq 1 "$SHARDS"); do
  for _ in $(seq 1 50); do redis-cli -p $((BASE + i)) ping > /dev/null 2>&1 && break; sleep 0.1; done
done
DB=bench21_$RANDOM
psql -h 127.0.0.1 -U postgres -q -c "create database $DB" test
taskset -c 0 "$BIN" serve --http 127.0.0.1:18081 --tcp 127.0.0.1:0 --node n1 \
  --cluster "$URLS" --database postgres://postgres@127.0.0.1:5432/$DB \
  --data "$OUT/data" > "$OUT/node.log" 2>&1 &
NODE=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18081/readyz > /dev/null && break; sleep 0.2; done
python3 - "${REDIS[@]}" > "$OUT/samples.txt" <<'PY' &
import sys, time
pids = sys.argv[1:]
while True:
    try:
        cpu = []
        for pid in pids:
            f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
            cpu.append(str(int(f[11]) + int(f[12])))
    except FileNotFoundError:
        break
    print(f'{time.time():.3f} ' + ' '.join(cpu), flush=True)
    time.sleep(1)
PY
SAMPLER=$!
taskset -c 1 "$BIN" bench --url ws://127.0.0.1:18081/ws --rooms 1000 --members 10 --interval 1000 \
  --duration 20 --size 100 --json --server-pid $NODE > "$OUT/bench.json" 2> "$OUT/bench.err"
END=$(date +%s.%N)
kill $NODE; wait $NODE 2>/dev/null
for pid in "${REDIS[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null; done
kill $SAMPLER 2>/dev/null
psql -h 127.0.0.1 -U postgres -q -c "drop database $DB" test
python3 - "$END" <<'PY'
import json, os, sys
out = os.environ['OUT']
end = float(sys.argv[1])
rows = [list(map(float, l.split())) for l in open(f'{out}/samples.txt') if l.strip()]
b = json.load(open(f'{out}/bench.json'))
# Posting ran for the 20 s before the drain: steady from 3 s in to 2 s before its end.
stop = end - b['drain_seconds']
lo, hi = stop - 20 + 3, stop - 2
steady = [r for r in rows if lo <= r[0] <= hi]
first, last = steady[0], steady[-1]
seconds = last[0] - first[0]
posts = seconds * 10000
shares = [(c1 - c0) / 100.0 / seconds for c0, c1 in zip(first[1:], last[1:])]
total = sum(c1 - c0 for c0, c1 in zip(first[1:], last[1:])) / 100.0
print(f"redis cpu per post: {total / posts * 1e6:.2f} us over {seconds:.1f} s"
      f" (each shard: {', '.join(f'{s * 100:.1f}%' for s in shares)})")
keys = {k: b[k] for k in b if k in ('deliveries', 'expected', 'loss', 'duplicates', 'out_of_order')}
keys['p50'] = b['latency_ms']['p50']
keys['p99'] = b['latency_ms']['p99']
keys['node_cpu_ms_per_1000_deliveries'] = round(b['server']['cpu_ms_per_1000_deliveries'], 2)
print(json.dumps(keys))
PY
