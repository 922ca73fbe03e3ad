#!/usr/bin/env bash
# `make test`: the suite once per Keras backend, all at the same time (TEST_JOBS=1: one run after another).
# Usage: .ci/test_backends.sh PYTHON "BACKENDS" [pytest args...]
# TEST_SHARDS=n (default 1) splits each backend's pass into n processes: KERAS_OPENSEG_TEST_SHARD=i/n makes
# tests/conftest.py keep every n-th test file. Each run's output goes to test-logs/<backend>-<i>.log and is printed
# whole when it ends; the exit status is 0 only when every run exits 0 (pytest's 5, nothing collected, fails too).
# Why in parallel: a pass is mostly single-threaded (tracing, compiling and Python overhead of small models), so
# on 2 cores one pass leaves a core idle. Measured on 2 cores: three passes at once, 1,704-1,719 s; six (TEST_SHARDS=2)
# were slower (torch's two shards 10:12 and 12:42 against 9:28 for one pass; the frameworks' thread pools
# contend), so the default stays one process per backend.
set -uo pipefail
python=$1
backends=$2
shift 2
shards=${TEST_SHARDS:-1}
mkdir -p test-logs
rm -f test-logs/*.log
start=$SECONDS
status=0
runs=()
for backend in $backends; do
  for ((shard = 0; shard < shards; shard++)); do runs+=("$backend-$shard"); done
done
jobs=${TEST_JOBS:-${#runs[@]}}
running=()

finish() {  # waits for the oldest running run and prints its log
  local entry=${running[0]} pid run code
  running=("${running[@]:1}")
  pid=${entry%%:*}
  run=${entry#*:}
  wait "$pid"
  code=$?
  echo "=== ${run%-*} (KERAS_BACKEND), shard ${run##*-}/$shards: pytest exit $code ($((SECONDS - start)) s since the start)"
  cat "test-logs/$run.log"
  if [ "$code" -ne 0 ]; then status=1; fi
}

for run in "${runs[@]}"; do
  KERAS_BACKEND=${run%-*} KERAS_OPENSEG_TEST_SHARD="${run##*-}/$shards" \
    "$python" -m pytest -q -p no:cacheprovider --durations=15 "$@" > "test-logs/$run.log" 2>&1 &
  running+=("$!:$run")
  if [ "${#running[@]}" -ge "$jobs" ]; then finish; fi
done
while [ "${#running[@]}" -gt 0 ]; do finish; done
echo "=== all runs done in $((SECONDS - start)) s, status $status"
exit $status
