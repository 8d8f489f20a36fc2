#!/usr/bin/env bash
# Realisation overhead, rix against Nix 2.8 on the same machine in one run.
#
# Workload: bench/dag.nix, 2,000 small derivations (shell builtins only, each
# referencing about 3 earlier ones) plus a top-level one depending on all of them,
# instantiated with nix-instantiate into two fresh stores (one per tool, so the
# .drv files are already in the store). Nix runs without sandbox, like rix here.
#   1. from-scratch build with -j2 (per-derivation overhead = time / 2001)
#   2. no-op rebuild of the same top-level derivation
#   3. closure query of the top-level output (nix-store -qR vs rix store closure)
# Needs: nix-bin, hyperfine, a release build of rix (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
RIX=${RIX:-$PWD/target/release/rix}
N=${N:-2000}
# Short paths: the top-level builder gets all 2,000 output paths in one variable,
# which must stay under the kernel's 128 KiB limit for one string.
work=$(mktemp -d /tmp/rbXXXX)
chmod 755 "$work"
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
url() { echo "local?store=$work/$1/s&state=$work/$1/state&log=$work/$1/log"; }
NIXS=$(url nix); RIXS=$(url rix)
export NIX_CONFIG=$'substituters =\nsandbox = false'

drv_nix=$(nix-instantiate --store "$NIXS" --arg n "$N" bench/dag.nix 2>/dev/null)
drv_rix=$(nix-instantiate --store "$RIXS" --arg n "$N" bench/dag.nix 2>/dev/null)

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }

echo "== from-scratch build of $((N + 1)) derivations, -j2"
t_nix=$(secs nix-store --store "$NIXS" --realise "$drv_nix" -j2)
t_rix=$(secs "$RIX" --store "$RIXS" build "$drv_rix" -j 2 --no-link --option sandbox false)
printf 'nix-store --realise: %8.2f s  (%.2f ms per derivation)\n' "$t_nix" "$(echo "$t_nix * 1000 / ($N + 1)" | bc -l)"
printf 'rix build:           %8.2f s  (%.2f ms per derivation)\n' "$t_rix" "$(echo "$t_rix * 1000 / ($N + 1)" | bc -l)"
printf 'ratio nix/rix:       %8.1fx\n' "$(echo "$t_nix / $t_rix" | bc -l)"

out_nix=$(nix-store --store "$NIXS" --realise "$drv_nix" 2>/dev/null)
out_rix=$("$RIX" --store "$RIXS" build "$drv_rix" --no-link --print-out-paths --option sandbox false)

echo "== no-op rebuild"
hyperfine -N --warmup 2 --runs 20 --export-markdown "$work/noop.md" \
    -n nix "nix-store --store $NIXS --realise $drv_nix" \
    -n rix "$RIX --store $RIXS build $drv_rix --no-link" | grep -E 'Time|±|faster'
echo "== closure query of the top-level output"
hyperfine -N --warmup 2 --runs 20 \
    -n nix "nix-store --store $NIXS -qR $out_nix" \
    -n rix "$RIX --store $RIXS store closure $out_rix" | grep -E 'Time|±|faster'
