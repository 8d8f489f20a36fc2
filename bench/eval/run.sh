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
for f in fib attrs foldl mixed; do
  echo "== $f.nix"
  hyperfine -N -w 2 -r "$runs" "$rix instantiate --eval --strict $f.nix" "nix-instantiate --eval --strict $f.nix" |
    grep -E "Time|faster|slower|Benchmark"
  /usr/bin/time -f "rix peak RSS %M KB" "$rix" instantiate --eval --strict $f.nix >/dev/null
  /usr/bin/time -f "nix peak RSS %M KB" nix-instantiate --eval --strict $f.nix >/dev/null
done

echo "== instantiate ../dag.nix (2,001 derivations) into an empty store"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
url() { echo "local?store=$tmp/$1/store&state=$tmp/$1/state&log=$tmp/$1/log"; }
hyperfine -w 1 -r "${DAG_RUNS:-5}" \
  --prepare "rm -rf $tmp/r $tmp/n" \
  "$rix --store '$(url r)' instantiate ../dag.nix" \
  "nix-instantiate --store '$(url n)' ../dag.nix" 2>/dev/null |
  grep -E "Time|faster|slower|Benchmark"
rm -rf "$tmp/r" "$tmp/n"
/usr/bin/time -f "rix peak RSS %M KB" "$rix" --store "$(url r)" instantiate ../dag.nix >/dev/null
/usr/bin/time -f "nix peak RSS %M KB" nix-instantiate --store "$(url n)" ../dag.nix >/dev/null 2>&1
