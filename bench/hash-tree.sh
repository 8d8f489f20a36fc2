#!/usr/bin/env bash
# NAR hashing throughput, rix against Nix 2.8 and the OpenSSL SHA-256 limit, on
# one machine in one run.
#
# Trees (bench/make-tree.py, seeded): (a) ~20,000 files of 1-16 KiB in nested
# directories (~150 MiB of NAR); (b) the same plus two 100 MiB files.
#   rix hash path --base16 TREE      vs   nix-hash --type sha256 TREE
#   vs openssl dgst -sha256 over the same NAR bytes (dumped once to a file)
# The page cache is warm for all three (each runs after a warm-up).
# Needs: nix-bin, hyperfine, openssl, python3, a release build of rix.
set -euo pipefail
cd "$(dirname "$0")/.."
RIX=${RIX:-$PWD/target/release/rix}
work=$(mktemp -d /tmp/rix-bench-hash.XXXXXX)
trap 'rm -rf "$work"' EXIT

python3 bench/make-tree.py "$work/a"
python3 bench/make-tree.py "$work/b" --big
for t in a b; do
    tree="$work/$t"
    "$RIX" nar dump "$tree" > "$work/$t.nar"
    want=$(nix-hash --type sha256 "$tree")
    got=$("$RIX" hash path --base16 "$tree")
    [ "$want" = "$got" ] || { echo "hash mismatch on tree $t: nix $want, rix $got" >&2; exit 1; }
    echo "== tree ($t): $(find "$tree" -type f | wc -l) files, $(( $(stat -c %s "$work/$t.nar") / 1048576 )) MiB of NAR"
    hyperfine -N --warmup 2 --runs 10 \
        -n "rix hash path" "$RIX hash path --base16 $tree" \
        -n "nix-hash" "nix-hash --type sha256 $tree" \
        -n "openssl over the NAR" "openssl dgst -sha256 $work/$t.nar" | grep -E 'Time|±|faster|slower'
done
