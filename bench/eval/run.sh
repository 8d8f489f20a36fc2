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
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$json"' EXIT
url() { echo "local?store=$tmp/$1/store&state=$tmp/$1/state&log=$tmp/$1/log"; }
hyperfine -w 1 -r "${DAG_RUNS:-5}" --export-json "$json" \
  --prepare "rm -rf $tmp/r $tmp/n" \
  "$rix --store '$(url r)' instantiate ../dag.nix" \
  "nix-instantiate --store '$(url n)' ../dag.nix" 2>/dev/null |
  grep -E "Time|faster|slower|Benchmark"
medians
rm -rf "$tmp/r" "$tmp/n"
/usr/bin/time -f "rix peak RSS %M KB" "$rix" --store "$(url r)" instantiate ../dag.nix >/dev/null
/usr/bin/time -f "nix peak RSS %M KB" nix-instantiate --store "$(url n)" ../dag.nix >/dev/null 2>&1
