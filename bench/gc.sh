#!/usr/bin/env bash
# Garbage collection, rix against Nix 2.8 on the same machine in one run.
#
# Workloads (every path dead: no roots):
#   dag    bench/dag.nix with n=$N (2,000 derivations plus a top-level one),
#          instantiated with nix-instantiate and built with `rix build --no-link`:
#          the whole closure (.drv files and outputs) is garbage.
#   files  $FILES (20,000) small files added with `nix-store --add`.
# Each store is populated once and copied aside (cp -a); before each collection
# the copy is put back at the same place, so both tools collect the same store
# (same paths, same database, page cache warmed the same way by the copy).
# Timed: `nix-store --gc` and `rix store gc` (deleting everything, printing the
# usual per-path lines to /dev/null). Also checked: both leave an empty store.
# Needs: nix-bin, bc, a release build of rix (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
RIX=${RIX:-$PWD/target/release/rix}
N=${N:-2000}
FILES=${FILES:-20000}
# A short store directory: the top-level derivation's environment lists all 2,000
# outputs, which must stay under Linux's 128 KiB limit for one string.
work=$(mktemp -d /tmp/gcXXX)
chmod 755 "$work"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
S=$work/s
url="local?store=$S/store&state=$S/state&log=$S/log"
export NIX_CONFIG=$'substituters =\nsandbox = false'

snapshot() { rm -rf "$work/snap-$1"; cp -a "$S" "$work/snap-$1"; }
restore() {
    chmod -R u+w "$S" 2>/dev/null || true
    rm -rf "$S"
    cp -a "$work/snap-$1" "$S"
    sync
}
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
left() { find "$S/store" -mindepth 1 -maxdepth 1 ! -name .links | wc -l; }

compare() { # workload name
    restore "$1"
    local dead t_nix t_rix l_nix l_rix
    dead=$("$RIX" --store "$url" store gc --print-dead 2>/dev/null | wc -l)
    t_nix=$(secs nix-store --store "$url" --gc)
    l_nix=$(left)
    restore "$1"
    t_rix=$(secs "$RIX" --store "$url" store gc)
    l_rix=$(left)
    printf '%-6s %6d dead paths   nix-store --gc: %8.2f s   rix store gc: %6.2f s   ratio %5.1fx   (left: nix %d, rix %d)\n' \
        "$1" "$dead" "$t_nix" "$t_rix" "$(echo "$t_nix / $t_rix" | bc -l)" "$l_nix" "$l_rix"
}

echo "== populating (not timed)"
drv=$(nix-instantiate --store "$url" --arg n "$N" bench/dag.nix 2>/dev/null)
"$RIX" --store "$url" --option sandbox false build "$drv" -j 2 --no-link >/dev/null 2>&1
snapshot dag
rm -rf "$S"
mkdir -p "$work/files"
for ((i = 0; i < FILES; i++)); do echo "small file $i" > "$work/files/f$i"; done
(cd "$work/files" && find . -type f -printf '%P\0' | xargs -0 nix-store --store "$url" --add >/dev/null)
snapshot files

echo "== collecting everything (rix $("$RIX" --version | cut -d' ' -f2), $(nix-store --version))"
compare dag
compare files
