#!/usr/bin/env bash
# Sandbox overhead per build: the 2,000-derivation DAG of bench/dag.nix built from
# scratch by rix with and without the sandbox, in fresh stores, same machine,
# same builder (a static busybox, bound into the sandbox), one run each of:
#   -j1: wall time / 2001 = cost per build; the difference is the sandbox's setup
#        and teardown (namespaces, mounts, the store directory on disk, uid slot,
#        moving outputs); CPU time (user + system of rix and the builders) too,
#        which a loaded machine disturbs less
#   -j2: the same with two builders at once, as bench/build-dag.sh runs it
#        (wall overhead per build = wall difference x 2 / 2001)
# The last derivation has all 2,000 others in its input closure, so one build also
# shows the cost of a large closure (2,000 hard links, or bind mounts when not root).
# Needs: nix-instantiate (nix-bin), busybox-static, a release build of rix.
set -euo pipefail
cd "$(dirname "$0")/.."
RIX=${RIX:-$PWD/target/release/rix}
N=${N:-2000}
BUSYBOX=${BUSYBOX:-/bin/busybox}
# Short paths: the last builder gets all 2,000 output paths in one variable,
# which must stay under the kernel's 128 KiB limit for one string.
work=$(mktemp -d /tmp/sb.XXXX)
chmod 755 "$work"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export NIX_CONFIG=$'substituters =\nsandbox = false'

# The DAG with busybox as the builder (the same shell inside and outside).
sed -e 's|builder = "/bin/sh";|builder = "'"$BUSYBOX"'";|' \
    -e 's|args = \[ "-c"|args = [ "sh" "-c"|' bench/dag.nix > "$work/dag.nix"

# Wall time and CPU time (user + system, rix and its builders) of a command.
secs() {
    local t
    t=$( { TIMEFORMAT='%R %U %S'; time "$@" >/dev/null 2>"$work/last.log"; } 2>&1 ) ||
        { echo "failed: $*" >&2; tail -5 "$work/last.log" >&2; exit 1; }
    set -- $t
    echo "$1 $(echo "$2 + $3" | bc)"
}
ms_per() { echo "$1 * 1000 / ($N + 1)" | bc -l; }

run() { # name jobs sandbox-flag
    local url="local?store=$work/$1/s&state=$work/$1/state&log=$work/$1/log"
    local drv
    drv=$(nix-instantiate --store "$url" --arg n "$N" "$work/dag.nix" 2>/dev/null)
    secs "$RIX" --store "$url" --option sandbox-paths "$BUSYBOX" --option sandbox-fallback false \
        build "$drv" -j "$2" --no-link "$3"
}

echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for j in 1 2; do
    read -r w_off c_off < <(run "n$j" "$j" --no-sandbox)
    read -r w_on c_on < <(run "s$j" "$j" --sandbox)
    printf -- '-j%s wall: no sandbox %6.2f s (%5.2f ms/drv), sandbox %6.2f s (%5.2f ms/drv): +%5.2f ms/build\n' \
        "$j" "$w_off" "$(ms_per "$w_off")" "$w_on" "$(ms_per "$w_on")" "$(echo "($w_on - $w_off) * $j * 1000 / ($N + 1)" | bc -l)"
    printf -- '-j%s CPU:  no sandbox %6.2f s (%5.2f ms/drv), sandbox %6.2f s (%5.2f ms/drv): +%5.2f ms/build\n' \
        "$j" "$c_off" "$(ms_per "$c_off")" "$c_on" "$(ms_per "$c_on")" "$(echo "($c_on - $c_off) * 1000 / ($N + 1)" | bc -l)"
done
