#!/usr/bin/env bash
# Repeating `eval FLAKE#ATTR` on an unchanged flake: rix's evaluation cache
# against Nix 2.26's eval cache, side by side (hyperfine, warm: the first
# runs fill the caches and are not timed).
#
#   RIX=target/release/rix NIX=../shared/tools/nix-current bash bench/flake_eval_cache.sh
#
# The flake is a Git repository (Nix caches only locked flakes) whose
# output does real work: nixpkgs' lib (tests/vectors/nixpkgs-lib) imported
# and used to build a 2,000-entry attribute set, hashed to one string.
set -euo pipefail
cd "$(dirname "$0")/.."
RIX=${RIX:-target/release/rix}
NIX=${NIX:-}   # a launcher such as ../shared/tools/nix-current, or empty for nix on PATH
RIX=$(realpath "$RIX")
nix_cmd="${NIX:+$NIX }nix"
LIB=$(realpath tests/vectors/nixpkgs-lib/lib)
work=$(mktemp -d /tmp/rix-bench-evalcache-XXXXXX)
echo "work directory: $work"
mkdir -p "$work/flake"
cp -r "$LIB" "$work/flake/lib"
cat > "$work/flake/flake.nix" <<'NIX'
{
  outputs = { self }:
    let
      lib = import ./lib;
      set = lib.listToAttrs (lib.genList (i: lib.nameValuePair "n${toString i}" (lib.strings.fixedWidthNumber 8 (i * i))) 2000);
      merged = lib.foldl' lib.recursiveUpdate { } (lib.mapAttrsToList (n: v: { ${n} = { inherit v; l = lib.stringLength v; }; }) set);
    in { x = builtins.hashString "sha256" (builtins.toJSON merged); };
}
NIX
git -C "$work/flake" init -q
git -C "$work/flake" add .
git -C "$work/flake" -c user.name=b -c user.email=b@example.org commit -q -m init
store="local?store=$work/store/store&state=$work/store/state&log=$work/store/log"
export XDG_CACHE_HOME=$work/cache
nix_eval="$nix_cmd --store $store --extra-experimental-features nix-command --extra-experimental-features flakes eval .#x"
cd "$work/flake"
# Fill both caches (the first run locks and evaluates).
for _ in 1 2; do
  "$RIX" --store "$store" eval .#x >/dev/null
  $nix_eval >/dev/null
done
echo "rix: $("$RIX" --store "$store" eval .#x)   nix: $($nix_eval)"
hyperfine -N --warmup 3 --runs "${RUNS:-30}" --export-json "$work/hyperfine.json" \
  -n rix "$RIX --store $store eval .#x" \
  -n "nix 2.26" "$nix_eval" 2>&1 | grep -v '^ *$' || true
python3 - "$work/hyperfine.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
a, b = r["rix"], r["nix 2.26"]
print(f"rix {a['mean']*1000:.1f} ms (user {a['user']*1000:.1f}), nix 2.26 {b['mean']*1000:.1f} ms (user {b['user']*1000:.1f}): nix/rix {b['mean']/a['mean']:.1f}x")
PY
