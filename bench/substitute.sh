#!/usr/bin/env bash
# Binary cache benchmarks, rix against Nix 2.8 side by side on one machine:
#   1. substituting a closure of COUNT (300) paths of ~1 MiB that compress ~2:1
#      from a file:// cache into an empty store: `rix copy --from` vs
#      `nix-store -r` with `substituters = file://...`, from an xz and a zstd cache;
#   2. `rix copy --to file://` vs `nix copy --to file://` (zstd);
#   3. narinfo requests per second that `rix serve` sustains under wrk.
# Prints the figures and the ratios. Needs hyperfine, wrk, nix-store and nix.
# Usage: bench/substitute.sh   (BENCH_DIR=dir keeps and reuses data and caches;
#        COUNT=n, RUNS=n, RIX=path/to/rix)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RIX=${RIX:-$ROOT/target/release/rix}
COUNT=${COUNT:-300}
RUNS=${RUNS:-5}
[ -x "$RIX" ] || cargo build --release -p rix-cli
for tool in hyperfine wrk nix-store nix; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
W=${BENCH_DIR:-$(mktemp -d /tmp/rix-bench-subst.XXXXXX)}
mkdir -p "$W"
chmod 755 "$W"
cd "$W"
export XDG_CACHE_HOME=$W/xdg-cache

if [ ! -s root.txt ]; then
    echo "== preparing $COUNT paths in $W/src"
    rm -rf data src
    python3 "$ROOT/bench/make-closure.py" data --count "$COUNT"
    "$RIX" --store "$W/src" store add data/* > paths.txt
    refs=$(sed 's/^/--reference /' paths.txt | tr '\n' ' ')
    # shellcheck disable=SC2086
    cat paths.txt | "$RIX" --store "$W/src" store add-text bench-root $refs > root.txt
    "$RIX" key generate bench-1 > key.sec
    "$RIX" key public < key.sec > key.pub
fi
ROOTPATH=$(cat root.txt)
PUB=$(cat key.pub)
for c in zstd xz; do
    if [ ! -f "cache-$c/nix-cache-info" ]; then
        echo "== writing the $c cache"
        "$RIX" --store "$W/src" copy --to "file://$W/cache-$c?compression=$c&secret-key=$W/key.sec" "$ROOTPATH"
    fi
done
du -sh data cache-zstd cache-xz

NIXCONF() { printf 'substituters = file://%s\ntrusted-public-keys = %s\n' "$W/cache-$1" "$PUB"; }
for c in xz zstd; do
    echo "== substituting from the $c cache"
    hyperfine --runs "$RUNS" --export-json "subst-$c.json" \
        --prepare "rm -rf $W/dst-nix $W/dst-rix; mkdir -m 755 $W/dst-nix $W/dst-rix; sync" \
        -n "nix-$c" "NIX_CONFIG='$(NIXCONF $c)' nix-store --store $W/dst-nix -r $ROOTPATH > /dev/null" \
        -n "rix-$c" "$RIX --store $W/dst-rix --option trusted-public-keys '$PUB' copy --from file://$W/cache-$c $ROOTPATH 2>/dev/null"
done

echo "== copying to a file:// cache (zstd)"
hyperfine --runs "$RUNS" --export-json copy.json \
    --prepare "rm -rf $W/up-nix $W/up-rix; sync" \
    -n nix-copy-to "nix --extra-experimental-features nix-command copy --store $W/src --to 'file://$W/up-nix?compression=zstd&secret-key=$W/key.sec' $ROOTPATH" \
    -n rix-copy-to "$RIX --store $W/src copy --to 'file://$W/up-rix?compression=zstd&secret-key=$W/key.sec' $ROOTPATH 2>/dev/null"

echo "== rix serve: narinfo requests per second (wrk, 10 s, 32 connections)"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$RIX" --store "$W/src" serve --listen "127.0.0.1:$PORT" --sign-key "$W/key.sec" 2>serve.log &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/nix-cache-info" >/dev/null && break; sleep 0.1; done
{
    echo 'local paths = {'
    sed -e 's|^/nix/store/\(.\{32\}\).*|  "/\1.narinfo",|' paths.txt
    echo '}'
    echo 'local i = 0'
    echo 'request = function() i = i + 1; return wrk.format("GET", paths[(i % #paths) + 1]) end'
} > narinfos.lua
wrk -t1 -c32 -d10s -s narinfos.lua "http://127.0.0.1:$PORT" | tee wrk.txt
kill $SERVER
trap - EXIT

python3 - "$W" <<'PY'
import json, re, sys
w = sys.argv[1]
def means(f):
    return {r["command"]: r["mean"] for r in json.load(open(f"{w}/{f}"))["results"]}
print("\n== summary (mean wall-clock seconds)")
for c in ["xz", "zstd"]:
    m = means(f"subst-{c}.json")
    print(f"substitute from {c:4}: nix {m['nix-'+c]:.3f} s, rix {m['rix-'+c]:.3f} s, rix is {m['nix-'+c]/m['rix-'+c]:.1f}x faster")
m = means("copy.json")
print(f"copy --to (zstd):    nix {m['nix-copy-to']:.3f} s, rix {m['rix-copy-to']:.3f} s, rix is {m['nix-copy-to']/m['rix-copy-to']:.1f}x faster")
txt = open(f"{w}/wrk.txt").read()
rps = re.search(r"Requests/sec:\s+([\d.]+)", txt).group(1)
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", txt)
sock = re.search(r"Socket errors: (.*)", txt)
print(f"rix serve narinfo:   {float(rps):.0f} requests/s, non-2xx: {errors.group(1) if errors else 0}, socket errors: {sock.group(1) if sock else 'none'}")
PY
