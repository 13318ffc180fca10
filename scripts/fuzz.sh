#!/usr/bin/env bash
# Runs every Go fuzz target of the engine for FUZZTIME each (default 20000x,
# an execution count; a duration such as 30s works too): `make test` runs them
# briefly, `make fuzz` (500000x) longer. Go fuzzes
# one target per invocation, so each package is listed and each target run
# on its own. A failure leaves its input under testdata/fuzz/<target>/,
# where it becomes a regression case of the ordinary test run.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-20000x}"
go="${GO:-go}"
status=0
for pkg in $($go list ./backend/...); do
  for target in $($go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "--- fuzz $pkg $target ($fuzztime)"
    if ! $go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" > /tmp/fuzz-$$.log 2>&1; then
      cat /tmp/fuzz-$$.log
      status=1
    else
      tail -n 1 /tmp/fuzz-$$.log
    fi
  done
done
rm -f /tmp/fuzz-$$.log
exit $status
