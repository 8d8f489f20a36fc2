#!/usr/bin/env bash
# builtins.fetchTarball of a 100 MiB tarball on loopback, rix against Nix 2.26
# side by side, cold: each run gets a fresh store and a fresh XDG_CACHE_HOME.
#
# Workload: a .tar.gz of FILES files (default 2,000) of 50 KiB each of random
# bytes (incompressible: the .tar.gz is ~100 MiB) in 40 directories, served by
# `python3 -m http.server` on 127.0.0.1. Both tools evaluate
#   builtins.fetchTarball "http://127.0.0.1:PORT/big.tar.gz"
# with `--store local?store=…` (rix: `rix instantiate --eval`; Nix:
# `nix-instantiate --eval`), which downloads, unpacks and adds the tree.
# Needs: hyperfine, python3, a release build of rix (cargo build --release),
# and the Nix 2.26 launcher (NIX_CURRENT, default /work/shared/tools/nix-current).
set -euo pipefail
cd "$(dirname "$0")/.."
RIX=${RIX:-${CARGO_TARGET_DIR:-$PWD/target}/release/rix}
NIX_CURRENT=${NIX_CURRENT:-/work/shared/tools/nix-current}
FILES=${FILES:-2000}
RUNS=${RUNS:-5}
work=$(mktemp -d /tmp/ftXXXX)
chmod 755 "$work"
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/srv" "$work/src/big"
python3 - "$work/src/big" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i % 40:02}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05}"), "wb") as f:
        f.write(os.urandom(50 * 1024))
PY
tar -C "$work/src" -czf "$work/srv/big.tar.gz" big
ls -l "$work/srv/big.tar.gz"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$work/srv" && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) &
server=$!
sleep 1
url="http://127.0.0.1:$port/big.tar.gz"
expr="builtins.fetchTarball \"$url\""
export NIX_CONFIG=$'substituters =\nsandbox = false'

st() { echo "local?store=$work/$1/store&state=$work/$1/state&log=$work/$1/log"; }
# Both give the same store path (checked once).
a=$(XDG_CACHE_HOME=$work/c1 "$RIX" --store "$(st r0)" instantiate --eval --expr "$expr")
b=$(XDG_CACHE_HOME=$work/c2 HOME=$work/c2 "$NIX_CURRENT" nix-instantiate --store "$(st r0)" --eval --expr "$expr" 2>/dev/null)
echo "rix: $a"; echo "nix: $b"
[ "$a" = "$b" ] || { echo "store paths differ" >&2; exit 1; }

hyperfine --runs "$RUNS" --export-markdown "$work/result.md" \
  --prepare "chmod -R u+w $work/r $work/n 2>/dev/null || true; rm -rf $work/r $work/n $work/rc $work/nc" \
  -n "rix fetchTarball" "XDG_CACHE_HOME=$work/rc $RIX --store '$(st r)' instantiate --eval --expr '$expr'" \
  -n "nix 2.26 fetchTarball" "XDG_CACHE_HOME=$work/nc HOME=$work/nc $NIX_CURRENT nix-instantiate --store '$(st n)' --eval --expr '$expr'"
cat "$work/result.md"
