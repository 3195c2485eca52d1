#!/usr/bin/env bash
# Measures what `leakscope run` costs while it watches this host: CPU share of one core
# and resident memory, sampled each minute, with test programs running (a native mutex
# leak, an idle thread pool, a Go channel leak and a Go worker pool).
#
# Usage (as root, after `cargo build --release -p tracer-user` and one run of the
# integration tests, which build the programs):
#   scripts/measure-daemon.sh [SECONDS]        # default 600
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
bin=target/release/leakscope
progs=target/tmp/leakscope-test-programs
goleaks=$(ls -d "$progs"/go/*-plain 2>/dev/null | sort -V | tail -1)/goleaks
for p in "$bin" "$progs/mutex_leak" "$progs/idle_pool" "$goleaks"; do
  [ -x "$p" ] || { echo "missing $p: build leakscope (release) and run the integration tests first" >&2; exit 2; }
done

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
"$progs/mutex_leak" >/dev/null 2>&1 & pids+=($!)
"$progs/idle_pool" >/dev/null 2>&1 & pids+=($!)
"$goleaks" send >/dev/null 2>&1 & pids+=($!)
"$goleaks" pool >/dev/null 2>&1 & pids+=($!)
dumps=$(mktemp -d)
"$bin" run --listen 127.0.0.1:9939 --dump-dir "$dumps" --lock-file "$dumps/leakscope.lock" 2>"$dumps/daemon.log" & daemon=$!
pids+=("$daemon")
sleep 2

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$daemon/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$daemon/status"; }
start_cpu=$(cpu)
start=$(date +%s)
echo "minute  cpu_share_since_start  rss_kib"
for ((m = 1; m * 60 <= secs; m++)); do
  sleep 60
  used=$(( $(cpu) - start_cpu ))
  awk -v u="$used" -v t="$ticks" -v s="$(( $(date +%s) - start ))" -v m="$m" -v r="$(rss)" \
    'BEGIN { printf "%-7d %20.2f%% %8d\n", m, 100 * u / t / s, r }'
done
used=$(( $(cpu) - start_cpu ))
elapsed=$(( $(date +%s) - start ))
awk -v u="$used" -v t="$ticks" -v s="$elapsed" -v r="$(rss)" \
  'BEGIN { printf "total: %.1f s CPU over %d s = %.2f%% of one core; RSS at end %.1f MiB\n", u / t, s, 100 * u / t / s, r / 1024 }'
echo "leaking processes reported: $(curl -s 127.0.0.1:9939/metrics | awk '/^leakscope_leaking_processes/ {print $2}')"
echo "dumps written: $(ls "$dumps"/*.json 2>/dev/null | wc -l)"
