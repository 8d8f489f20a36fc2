#!/usr/bin/env bash
# Times rix's evaluator against nix-instantiate on the benchmark expressions:
# wall time with hyperfine, peak RSS with /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release -q -p rix-eval --example nix-eval
rix=../../target/release/examples/nix-eval
for f in fib attrs foldl mixed; do
  echo "== $f.nix"
  hyperfine -N -w 2 -r 10 "$rix --strict $f.nix" "nix-instantiate --eval --strict $f.nix" | grep -E "Time|faster|Benchmark"
  /usr/bin/time -f "rix peak RSS %M KB" "$rix" --strict $f.nix > /dev/null
  /usr/bin/time -f "nix peak RSS %M KB" nix-instantiate --eval --strict $f.nix > /dev/null
done
