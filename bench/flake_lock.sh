#!/usr/bin/env bash
# `rix flake lock` against Nix 2.26's `nix flake lock` of a flake with 20
# inputs, in one run.
#
# The inputs, generated here: 10 `path:` flakes (p01..p10) and 10 Git
# repositories (g01..g10, one commit each) named `git+file://`. Some have
# inputs of their own (p03 -> p01, p02; g03 -> g01, g02; g06 -> g05, p04; g09
# -> g08, g03 whose g02 follows g08), and the top flake makes some of those follow
# its own inputs (`inputs.g03.inputs.g01.follows = "g01"`, ...), so the lock
# file has nested nodes and `follows` edges at two depths.
# cold: a fresh store, a fresh cache directory (XDG_CACHE_HOME) and no
# flake.lock before each run (hyperfine --prepare). The two tools' lock
# files are checked to be the same, byte for byte. The work directory is
# under $TMPDIR (/tmp): on ext4 a cold run's inode allocations, right after
# the previous run's stores were deleted, cost both tools several times
# their own work (the allocator skips recently deleted inodes); TMPDIR=/dev/shm
# (tmpfs) measures the tools.
# Needs: git, hyperfine, Nix 2.26 ($NIX_CURRENT, default the launcher in
# shared/tools), a release build of rix (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
RIX=${RIX:-${CARGO_TARGET_DIR:-$PWD/target}/release/rix}
NIX_CURRENT=${NIX_CURRENT:-${RIX_NIX_CURRENT:-$PWD/../shared/tools/nix-current}}
RUNS=${RUNS:-10}
work=$(mktemp -d "${TMPDIR:-/tmp}/flXXX")
chmod 755 "$work"
[[ -n ${KEEP:-} ]] && echo "work: $work" || trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export NIX_CONFIG=$'substituters =\nsandbox = false\nflake-registry ='
export GIT_CONFIG_NOSYSTEM=1 HOME=$work/home XDG_CONFIG_HOME=$work/home/config
export GIT_AUTHOR_NAME=Bench GIT_AUTHOR_EMAIL=bench@example.org
export GIT_COMMITTER_NAME=Bench GIT_COMMITTER_EMAIL=bench@example.org
export GIT_AUTHOR_DATE=2020-01-01T00:00:00Z GIT_COMMITTER_DATE=2020-01-01T00:00:00Z
mkdir -p "$HOME"

# flake DIR INPUTS: a flake.nix whose inputs are the given `name=url` pairs
# (a `name>a/b` pair is `inputs.name.follows = "a/b"`, `name.sub>x` an
# override of an input's input).
flake() {
    local dir=$1
    shift
    mkdir -p "$dir"
    {
        echo "{"
        echo "  description = \"$(basename "$dir")\";"
        for i in "$@"; do
            case $i in
            *'>'*) echo "  inputs.${i%%>*}.follows = \"${i#*>}\";" ;;
            *) echo "  inputs.${i%%=*}.url = \"${i#*=}\";" ;;
            esac
        done
        echo "  outputs = { self, ... }@inputs: { names = builtins.attrNames inputs; };"
        echo "}"
    } >"$dir/flake.nix"
    for f in $(seq 1 20); do echo "data $f of $dir" >"$dir/file$f.txt"; done
}
commit() {
    git init -q "$1"
    git -C "$1" add .
    git -C "$1" commit -q -m init
}
p() { echo "path:$work/$1"; }
g() { echo "git+file://$work/$1"; }

for i in 01 02 04 05 06 07 08 09 10; do flake "$work/p$i"; done
flake "$work/p03" "p01=$(p p01)" "p02=$(p p02)"
for i in 01 02 04 05 07 08 10; do flake "$work/g$i" && commit "$work/g$i"; done
flake "$work/g03" "g01=$(g g01)" "g02=$(g g02)" && commit "$work/g03"
flake "$work/g06" "g05=$(g g05)" "p04=$(p p04)" && commit "$work/g06"
flake "$work/g09" "g08=$(g g08)" "g03=$(g g03)" "g03.inputs.g02>g08" && commit "$work/g09"

top=()
for i in $(seq -w 1 10); do top+=("p$i=$(p "p$i")" "g$i=$(g "g$i")"); done
top+=("p03.inputs.p01>p01" "g03.inputs.g01>g01" "g06.inputs.p04>p04" "g09.inputs.g08>g08")
flake "$work/top-rix" "${top[@]}"
flake "$work/top-nix" "${top[@]}"
echo "top flake: $(grep -c 'url =' "$work/top-rix/flake.nix") inputs, $(grep -c follows "$work/top-rix/flake.nix") follows"

url() { echo "local?store=$1/store&state=$1/state&log=$1/log"; }
rix_cmd="env XDG_CACHE_HOME=$work/rc $RIX --store '$(url "$work/rs")' flake lock $work/top-rix"
nix_cmd="env XDG_CACHE_HOME=$work/nc $NIX_CURRENT nix --extra-experimental-features 'nix-command flakes' --store '$(url "$work/ns")' flake lock $work/top-nix"

# Both tools write the same lock file.
eval "$rix_cmd" 2>/dev/null
eval "$nix_cmd" 2>/dev/null
cmp "$work/top-rix/flake.lock" "$work/top-nix/flake.lock" || {
    diff "$work/top-rix/flake.lock" "$work/top-nix/flake.lock" >&2
    exit 1
}
echo "lock file: $(grep -c '"locked"' "$work/top-rix/flake.lock") locked nodes, the same from both"

echo "== flake lock, cold (fresh store, cache dir, no flake.lock)"
hyperfine -N --runs "$RUNS" \
    --prepare "rm -rf $work/rs $work/rc $work/ns $work/nc $work/top-rix/flake.lock $work/top-nix/flake.lock" \
    -n "rix flake lock" "$rix_cmd" \
    -n "nix flake lock" "$nix_cmd" 2>&1 | grep -v '^ *$'

# The same with `fsync-store-paths = true`: every added path flushed to disk
# before it is registered (rix: one `syncfs` per input; Nix: an fsync of
# every file and directory). rix's default before it followed this setting.
echo "== flake lock, cold, fsync-store-paths = true"
hyperfine -N --runs "$RUNS" \
    --prepare "rm -rf $work/rs $work/rc $work/ns $work/nc $work/top-rix/flake.lock $work/top-nix/flake.lock" \
    -n "rix flake lock, fsync" "${rix_cmd/ flake lock/ --option fsync-store-paths true flake lock}" \
    -n "nix flake lock, fsync" "${nix_cmd/ flake lock/ --option fsync-store-paths true flake lock}" 2>&1 | grep -v '^ *$'
