#!/usr/bin/env bash
# `make test`: the suite once per Keras backend, the backends at the same time (TEST_JOBS=1: one after another).
# Usage: .ci/test_backends.sh PYTHON "BACKENDS" [pytest args...]
# Each backend's output goes to test-logs/<backend>.log and is printed whole when that run ends; the exit status
# is 0 only when every run exits 0 (pytest's 5, nothing collected, fails too).
# Why in parallel: on 2 cores a pass leaves a core idle much of the time (tracing, compiling and Python
# overhead of small models are single-threaded), so three concurrent passes finish sooner than three in a row.
# Measured on 2 cores (clean clone): three passes at once 1,704-1,719 s; two pytest processes per backend (six at
# once, every other test file each) were slower (torch's two 10:12 and 12:42 against 9:28 for one pass).
set -uo pipefail
python=$1
backends=$2
shift 2
jobs=${TEST_JOBS:-3}
mkdir -p test-logs
start=$SECONDS
status=0
running=()

finish() {  # waits for the oldest running pass and prints its log
  local entry=${running[0]} pid backend code
  running=("${running[@]:1}")
  pid=${entry%%:*}
  backend=${entry#*:}
  wait "$pid"
  code=$?
  echo "=== KERAS_BACKEND=$backend: pytest exit $code ($((SECONDS - start)) s since the start)"
  cat "test-logs/$backend.log"
  if [ "$code" -ne 0 ]; then status=1; fi
}

for backend in $backends; do
  (
    KERAS_BACKEND=$backend "$python" -m pytest -q -p no:cacheprovider --durations=15 "$@" \
      > "test-logs/$backend.log" 2>&1
    code=$?
    echo "$code" > "test-logs/$backend.exit"  # when a pass ends (.ci/run clears these and starts the wheel demo by them)
    exit "$code"
  ) &
  running+=("$!:$backend")
  if [ "${#running[@]}" -ge "$jobs" ]; then finish; fi
done
while [ "${#running[@]}" -gt 0 ]; do finish; done
echo "=== all backends done in $((SECONDS - start)) s, status $status"
exit $status
