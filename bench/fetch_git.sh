#!/usr/bin/env bash
# builtins.fetchGit of a local repository, rix against Nix 2.26 in one run.
#
# The repository: $COMMITS (10,000) commits and $FILES (5,000) files, made with
# `git fast-import` (the first commit adds every file in 50 directories, each
# later one changes one file), checked out (a clean working tree).
# Workloads, each timed with hyperfine:
#   workdir  `builtins.fetchGit /repo` (the working tree: git status, the
#            tracked files read from disk)
#   rev      `builtins.fetchGit { url = /repo; rev = HEAD; }` (the commit's
#            tree exported from the object database)
# cold: a fresh store and a fresh cache directory (XDG_CACHE_HOME) before each
# run (hyperfine --prepare, then sync so that deleting the last run's store is
# not written back during this one); cached: the second and later runs on the same
# store and cache (the fetcher cache answers revCount, lastModified and the
# store path).
# Needs: git, hyperfine, Nix 2.26 ($NIX_CURRENT, default the launcher in
# shared/tools), a release build of rix (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
RIX=${RIX:-${CARGO_TARGET_DIR:-$PWD/target}/release/rix}
NIX_CURRENT=${NIX_CURRENT:-${RIX_NIX_CURRENT:-$PWD/../shared/tools/nix-current}}
COMMITS=${COMMITS:-10000}
FILES=${FILES:-5000}
RUNS=${RUNS:-10}
# Where the repository, stores and caches go (/dev/shm takes the disk out).
BENCH_DIR=${BENCH_DIR:-/tmp}
work=$(mktemp -d "$BENCH_DIR/fgXXX")
chmod 755 "$work"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export NIX_CONFIG=$'substituters =\nsandbox = false'
export GIT_CONFIG_NOSYSTEM=1 HOME=$work/home
mkdir -p "$HOME"

repo=$work/repo
git init -q "$repo"
python3 - "$COMMITS" "$FILES" <<'EOF' | git -C "$repo" fast-import --quiet
import sys
commits, files = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.buffer
def data(b):
    out.write(b"data %d\n" % len(b) + b + b"\n")
t = 1577836800
for c in range(commits):
    out.write(b"commit refs/heads/master\n")
    out.write(b"committer Bench <bench@example.org> %d +0000\n" % (t + c))
    data(b"commit %d" % c)
    if c == 0:
        for i in range(files):
            out.write(b"M 644 inline d%02d/f%04d.txt\n" % (i % 50, i))
            data((b"file %d\n" % i) * 20)
    else:
        i = (c * 7919) % files
        out.write(b"M 644 inline d%02d/f%04d.txt\n" % (i % 50, i))
        data((b"file %d version %d\n" % (i, c)) * 20)
EOF
git -C "$repo" reset -q --hard master
rev=$(git -C "$repo" rev-parse HEAD)
echo "repository: $(git -C "$repo" rev-list --count HEAD) commits, $(git -C "$repo" ls-files | wc -l) files"

expr_workdir="(builtins.fetchGit $repo).narHash"
expr_rev="(builtins.fetchGit { url = $repo; rev = \"$rev\"; }).narHash"

# tool store-dir cache-dir expr
rix_cmd() { echo "env XDG_CACHE_HOME=$3 $RIX --store 'local?store=$2/store&state=$2/state&log=$2/log' instantiate --eval --expr '$4'"; }
nix_cmd() { echo "env XDG_CACHE_HOME=$3 $NIX_CURRENT nix-instantiate --store 'local?store=$2/store&state=$2/state&log=$2/log' --eval --expr '$4'"; }

# Both tools give the same result.
a=$(eval "$(rix_cmd x "$work/check-r" "$work/check-rc" "$expr_workdir")")
b=$(eval "$(nix_cmd x "$work/check-n" "$work/check-nc" "$expr_workdir")")
[[ $a == "$b" ]] || { echo "results differ: $a vs $b" >&2; exit 1; }

for w in workdir rev; do
    e=expr_$w
    e=${!e}
    echo "== $w, cold (fresh store and cache dir)"
    hyperfine -N --runs "$RUNS" \
        --prepare "sh -c 'rm -rf $work/rs $work/rc $work/ns $work/nc; sync'" \
        -n "rix $w cold" "$(rix_cmd x "$work/rs" "$work/rc" "$e")" \
        -n "nix $w cold" "$(nix_cmd x "$work/ns" "$work/nc" "$e")" 2>&1 | grep -v '^ *$'
    echo "== $w, cached"
    hyperfine -N --runs "$RUNS" --warmup 1 \
        -n "rix $w cached" "$(rix_cmd x "$work/rs" "$work/rc" "$e")" \
        -n "nix $w cached" "$(nix_cmd x "$work/ns" "$work/nc" "$e")" 2>&1 | grep -v '^ *$'
done
