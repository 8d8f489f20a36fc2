#!/usr/bin/env bash
# Entering an unchanged project's development environment again:
# `rix develop --command true` against Nix 2.26's `nix develop --command
# true`, side by side (hyperfine, warm: the first runs build the
# environment and fill the caches and are not timed).
#
#   RIX=target/release/rix NIX=../shared/tools/nix-current bash bench/develop.sh
#
# The project is a Git repository (a flake; Nix's eval cache serves only
# locked flakes, so this is Nix at its fastest) holding 500 source files,
# and its dev shell's attributes are computed with nixpkgs' lib
# (tests/vectors/nixpkgs-lib; a 2,000-entry set merged with
# recursiveUpdate, as bench/flake_eval_cache.sh), standing for the cost of
# evaluating a real shell through nixpkgs. The stdenv is a small fake one (a `setup` script) built with
# /bin/bash, so that no nixpkgs needs to be fetched; `flake-registry` is
# empty, so Nix's look-up of nixpkgs#bashInteractive fails at once (with a
# registry it would cost Nix more). Both use the same store.
set -euo pipefail
cd "$(dirname "$0")/.."
RIX=${RIX:-target/release/rix}
NIX=${NIX:-} # a launcher such as ../shared/tools/nix-current, or empty for nix on PATH
RIX=$(realpath "$RIX")
nix_cmd="${NIX:+$NIX }nix"
LIB=$(realpath tests/vectors/nixpkgs-lib/lib)
work=$(mktemp -d /tmp/rix-bench-develop-XXXXXX)
chmod 755 "$work"
echo "work directory: $work"
p=$work/project
mkdir -p "$p/src"
cp -r "$LIB" "$p/lib"
for i in $(seq 1 500); do printf 'int f%d(void) { return %d; }\n' "$i" "$i" >"$p/src/f$i.c"; done
cat >"$p/flake.nix" <<'NIX'
{
  outputs = { self }:
    let
      lib = import ./lib;
      system = "x86_64-linux";
      stdenv = derivation {
        name = "bench-stdenv";
        inherit system;
        builder = "/bin/bash";
        args = [ "-c" ''
          PATH=/usr/bin:/bin; mkdir $out
          echo 'export CFLAGS="-O2"; : ''${outputs:=out}; runHook() { :; }' > $out/setup
        '' ];
      };
      sources = lib.filter (lib.hasSuffix ".c") (builtins.attrNames (builtins.readDir ./src));
      flags = lib.concatMapStringsSep " " (f: "-D${lib.toUpper (lib.removeSuffix ".c" f)}") sources;
      # What evaluating a shell through nixpkgs costs, roughly (about 1 s for Nix).
      table = lib.listToAttrs (lib.genList (i: lib.nameValuePair "n${toString i}" (lib.strings.fixedWidthNumber 8 (i * i))) 2000);
      merged = lib.foldl' lib.recursiveUpdate { } (lib.mapAttrsToList (n: v: { ${n} = { inherit v; l = lib.stringLength v; }; }) table);
    in {
      devShells.${system}.default = derivation {
        name = "bench-shell";
        inherit system stdenv;
        builder = "/bin/bash";
        args = [ "-c" "echo > $out" ];
        FLAGS = flags;
        TABLE = builtins.hashString "sha256" (builtins.toJSON merged);
      };
    };
}
NIX
git -C "$p" init -q
git -C "$p" add .
git -C "$p" -c user.name=b -c user.email=b@example.org commit -q -m init
store="local?store=$work/store/store&state=$work/store/state&log=$work/store/log"
export XDG_CACHE_HOME=$work/cache HOME=$work/home
mkdir -p "$HOME"
export NIX_CONFIG=$'experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nflake-registry =\nbuild-hook ='
rix_dev="$RIX --store $store --option sandbox false develop --command true"
nix_dev="$nix_cmd --store $store develop --command true"
cd "$p"
# measure LABEL: fill both caches (not timed), then time both.
measure() {
  for _ in 1 2; do
    $rix_dev
    $nix_dev 2>/dev/null
  done
  echo "== $1"
  hyperfine -N --warmup 3 --runs "${RUNS:-30}" --export-json "$work/hyperfine-$1.json" \
    -n rix "$rix_dev" \
    -n "nix 2.26" "$nix_dev" 2>&1 | grep -v '^ *$' || true
  python3 - "$work/hyperfine-$1.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
a, b = r["rix"], r["nix 2.26"]
print(f"rix {a['mean']*1000:.1f} ms (user+sys {(a['user']+a['system'])*1000:.1f}), nix 2.26 {b['mean']*1000:.1f} ms (user+sys {(b['user']+b['system'])*1000:.1f}): nix/rix {b['mean']/a['mean']:.1f}x")
PY
}
# A committed tree: Nix's eval cache answers (its best case).
measure clean
# Work in progress: a tracked file changed, not committed. Nix copies the
# dirty tree to the store and evaluates again on every entry (its eval
# cache keeps only locked flakes); rix's key is the tree as it is on disk.
echo '/* edited */' >>"$p/src/f1.c"
measure dirty
# A cold entry (a fresh rix cache: evaluation, the environment derivation
# written, nothing to build), once each, for scale.
rm -rf "$work/cache/rix"
/usr/bin/time -f "rix, after its cache is removed: %e s" $rix_dev
rm -rf "$work/cache/nix"
/usr/bin/time -f "nix 2.26, after its eval cache is removed: %e s" $nix_dev 2>&1 | grep -v '^error (ignored)'
