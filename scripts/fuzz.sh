#!/usr/bin/env bash
# Runs every fuzz target for the time given (a go test -fuzztime, e.g. 15s
# or 5m), one after the other: go test fuzzes one target of one package per
# run. `make test` runs it briefly, `make fuzz` for longer. New crashers
# land in the package's testdata/fuzz/<Target>/: fix the code and commit
# them as regression seeds (go test runs them every time).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
fuzztime=${1:?usage: scripts/fuzz.sh FUZZTIME (e.g. 15s, 5m)}

# package  target
targets="
./dhcpd                FuzzHandler
./tftpd                FuzzResolve
./rc/proto             FuzzOpen
./rc/proto             FuzzSignOpen
./am                   FuzzOMFQuery
./internal/inventory   FuzzParseFile
./internal/inventory   FuzzMarshal
./internal/store       FuzzImport
"

failed=()
while read -r pkg name; do
  [ -n "$pkg" ] || continue
  echo "fuzz: $pkg $name for $fuzztime" >&2
  go test -count=1 -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg" || failed+=("$pkg $name")
done <<< "$targets"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'fuzz: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
