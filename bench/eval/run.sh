#!/usr/bin/env bash
# Times rix's evaluator against Nix 2.8: `rix instantiate --eval --strict` and
# `nix-instantiate --eval --strict` on the benchmark expressions, then
# instantiating bench/dag.nix (2,001 derivations) into fresh temporary stores.
# Wall time with hyperfine, peak RSS with /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release -q -p rix-cli
rix=$(realpath ../../target/release/rix)
runs=${RUNS:-10}
json=$(mktemp)
# Medians (and their ratio) as well as hyperfine's means: on a shared machine a
# few runs stall (another tenant, the kernel compacting memory for huge pages)
# and move the mean much more than the median.
medians() {
  python3 -c '
import json, statistics, sys
r = json.load(open(sys.argv[1]))["results"]
m = [statistics.median(x["times"]) * 1000 for x in r]
print(f"median: rix {m[0]:.1f} ms, nix {m[1]:.1f} ms, rix faster: {m[1] / m[0]:.2f}x")
' "$json"
}
for f in fib attrs foldl mixed; do
  echo "== $f.nix"
  hyperfine -N -w 2 -r "$runs" --export-json "$json" \
    "$rix instantiate --eval --strict $f.nix" "nix-instantiate --eval --strict $f.nix" |
    grep -E "Time|faster|slower|Benchmark"
  medians
  /usr/bin/time -f "rix peak RSS %M KB" "$rix" instantiate --eval --strict $f.nix >/dev/null
  /usr/bin/time -f "nix peak RSS %M KB" nix-instantiate --eval --strict $f.nix >/dev/null
done

echo "== instantiate ../dag.nix (2,001 derivations) into an empty store"
# Every run gets a store of its own, and none is deleted until the end. On ext4
# without a journal (as on the machine these figures come from), the kernel
# avoids reusing inodes deleted in the last minutes and scans past each of them
# on every file creation: deleting the last run's 4,000 files first made the
# next run several times slower, for rix and Nix alike, and measured the disk.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$json"' EXIT
url() { echo "local?store=$tmp/$1/store&state=$tmp/$1/state&log=$tmp/$1/log"; }
fresh="mkdir -p $tmp/old && for d in r n; do [ ! -e $tmp/\$d ] || mv $tmp/\$d \$(mktemp -d -p $tmp/old); done"
hyperfine -w 1 -r "${DAG_RUNS:-10}" --export-json "$json" --prepare "$fresh" \
  "$rix --store '$(url r)' instantiate ../dag.nix" \
  "nix-instantiate --store '$(url n)' ../dag.nix" 2>/dev/null |
  grep -E "Time|faster|slower|Benchmark"
medians
sh -c "$fresh"
/usr/bin/time -f "rix peak RSS %M KB" "$rix" --store "$(url r)" instantiate ../dag.nix >/dev/null
# (Nix warns about --add-root on stderr; keep that out, and time's line in.)
/usr/bin/time -o "$tmp/rss" -f "nix peak RSS %M KB" nix-instantiate --store "$(url n)" ../dag.nix >/dev/null 2>&1
cat "$tmp/rss"
