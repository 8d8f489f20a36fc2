#!/usr/bin/env bash
# The daemon (issue 13: multi-user stores): `rix daemon` against Nix 2.26's
# `nix-daemon` (and Nix 2.8's), the same clients talking to each, in one run.
#
#   1. path-info queries: a store of $PATHS files added with `nix-store --add`
#      (a fresh one per daemon and client), then $QUERIES queries through the
#      daemon: $((QUERIES / PATHS)) client processes, each asking about all
#      $PATHS paths, with rix's client (`rix path-info --store unix://...`) and
#      with Nix 2.26's (`nix path-info --store unix://...`).
#   2. bench/dag.nix ($N derivations plus a top-level one), evaluated and built
#      from scratch with -j2 into a fresh store: by `rix build` directly, by
#      `rix build` through each daemon, and by Nix 2.26's `nix-build` through
#      nix-daemon 2.26 and through rix's daemon.
#   3. 64 idle connections (bench/daemon_procs.py idle): the memory of each
#      daemon with its per-connection processes, as the sum of PSS (and of RSS).
#   4. $CONNS connections one after the other, each `rix path-info` of one path:
#      the cost of a connection (its process, handshake, store opened).
#   5. $QUERIES path-info queries over one connection (the issue's measure): a
#      client (bench/daemon_procs.py query) that writes its requests ahead of
#      the replies, as rix's client pipelines them, so that the daemon's own
#      cost per request is what is measured.
#
# Every daemon runs under `perf stat -e task-clock`, which counts the daemon and
# all its per-connection processes and builders ("server CPU"); its peak memory
# is the largest sum of RSS (and of PSS) over its process tree, sampled every
# 50 ms (bench/daemon_procs.py sample). Client figures come from /usr/bin/time
# (wall, user + system CPU of the client processes, largest RSS of one).
# Needs: Nix 2.8 (nix-bin), Nix 2.26 ($NIX26, default /work/shared/tools/nix-current),
# perf, python3, GNU time, bc, a release build of rix (cargo build --release).
# Nothing is deleted until the end (KEEP=1 keeps the work directory).
set -euo pipefail
cd "$(dirname "$0")/.."
RIX=${RIX:-$PWD/target/release/rix}
NIX26=${NIX26:-/work/shared/tools/nix-current}
PATHS=${PATHS:-2000}
QUERIES=${QUERIES:-100000}
N=${N:-2000}
IDLE=${IDLE:-64}
CONNS=${CONNS:-200}
ONLY=${ONLY:-12345}
PROCS=$PWD/bench/daemon_procs.py
DAG=$PWD/bench/dag.nix
work=$(mktemp -d /tmp/rdXXXX)
chmod 755 "$work"
# A copy, so that a build of the workspace during the run changes nothing.
cp "$RIX" "$work/rix"
RIX=$work/rix
daemons=()
cleanup() {
    for p in "${daemons[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -z "${KEEP:-}" ]; then
        chmod -R u+w "$work" 2>/dev/null || true
        rm -rf "$work"
    else
        echo "kept $work"
    fi
}
trap cleanup EXIT
export NIX_CONFIG=$'substituters =\nsandbox = false\nexperimental-features = nix-command'

local_url() { echo "local?store=$work/$1/s&state=$work/$1/state&log=$work/$1/log"; }
sock_url() { echo "unix://$work/$1/sock?store=$work/$1/s"; }

# start_daemon DIR KIND (rix | nix26 | nix28): a daemon on the store in DIR, under
# perf stat and the memory sampler.
start_daemon() {
    local d=$work/$1 kind=$2 store
    store=$(local_url "$1")
    mkdir -p "$d"
    local cmd
    case $kind in
    rix) cmd=("$RIX" --store "$store" --option sandbox false --option max-jobs 2 daemon) ;;
    nix26) cmd=("$NIX26" nix-daemon) ;;
    nix28) cmd=(nix-daemon) ;;
    esac
    if [ "$kind" != rix ]; then
        cmd+=(--option store "$store" --option build-users-group "" --option sandbox false
            --option substituters "" --option max-jobs 2)
    fi
    # Nix 2.26 would start its build hook for each build; 2.8's default hook
    # declines quickly (and 2.8 fails with an empty one).
    [ "$kind" = nix26 ] && cmd+=(--option build-hook "")
    NIX_DAEMON_SOCKET_PATH=$d/sock perf stat -e task-clock -x, -o "$d/perf" -- "${cmd[@]}" \
        >"$d/daemon.log" 2>&1 &
    local perf_pid=$! pid=
    for _ in $(seq 100); do
        pid=$(cat "/proc/$perf_pid/task/$perf_pid/children" 2>/dev/null | awk '{print $1}')
        [ -n "$pid" ] && [ -S "$d/sock" ] && break
        sleep 0.05
    done
    echo "$pid" >"$d/pid"
    echo "$perf_pid" >"$d/perf_pid"
    daemons+=("$pid")
    python3 "$PROCS" sample "$pid" "$d/mem" &
    echo $! >"$d/sampler_pid"
}

# stop_daemon DIR: sets STOP to "server_cpu_s peak_rss_mib peak_pss_mib".
stop_daemon() {
    local d=$work/$1
    sleep 0.5 # let the last connection's process exit
    kill "$(cat "$d/sampler_pid")"
    wait "$(cat "$d/sampler_pid")" 2>/dev/null || true
    kill "$(cat "$d/pid")"
    wait "$(cat "$d/perf_pid")" 2>/dev/null || true
    local ms rss pss
    ms=$(grep task-clock "$d/perf" | cut -d, -f1)
    read -r rss pss <"$d/mem"
    STOP=$(printf '%.3f %.1f %.1f' "$(echo "$ms / 1000" | bc -l)" "$(echo "$rss / 1024" | bc -l)" \
        "$(echo "$pss / 1024" | bc -l)")
}

# timed OUT CMD...: runs CMD under GNU time; OUT gets "wall_s client_cpu_s client_maxrss_mib".
timed() {
    local out=$1
    shift
    /usr/bin/time -f '%e %U %S %M' -o "$out.time" "$@" || echo "FAILED (exit status $?): $*" >&2
    read -r e u s m < <(tail -1 "$out.time")
    printf '%.3f %.3f %.1f\n' "$e" "$(echo "$u + $s" | bc -l)" "$(echo "$m / 1024" | bc -l)" >"$out"
}

ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }

declare -A WALL CCPU SCPU SRSS SPSS
row() { # name dir
    printf '%-34s %8.3f s %8.3f s %9.3f s %8.1f MiB %8.1f MiB\n' "$1" "${WALL[$2]}" "${CCPU[$2]}" \
        "${SCPU[$2]}" "${SRSS[$2]}" "${SPSS[$2]}"
}
header() {
    printf '%-34s %10s %10s %11s %12s %12s\n' "" wall "client CPU" "server CPU" "server RSS" "server PSS"
}

mkdir -p "$work/files"
for i in $(seq 1 "$PATHS"); do echo "file $i" >"$work/files/f$i"; done

# query_run NAME KIND CLIENT (rix | nix26)
query_run() {
    local name=$1 kind=$2 client=$3 d=$work/$1
    mkdir -p "$d"
    nix-store --store "$(local_url "$name")" --add "$work"/files/* >"$d/paths" 2>/dev/null
    start_daemon "$name" "$kind"
    local url reps=$((QUERIES / PATHS))
    url=$(sock_url "$name")
    local client_cmd
    case $client in
    rix) client_cmd="$RIX path-info --store '$url'" ;;
    nix26) client_cmd="$NIX26 nix path-info --store '$url'" ;;
    esac
    timed "$d/client" bash -c "for i in \$(seq $reps); do $client_cmd \$(cat '$d/paths') >/dev/null; done"
    read -r WALL[$name] CCPU[$name] _ <"$d/client"
    stop_daemon "$name"
    read -r SCPU[$name] SRSS[$name] SPSS[$name] <<<"$STOP"
}

if [[ $ONLY == *1* ]]; then
    echo "== 1. $QUERIES path-info queries ($((QUERIES / PATHS)) clients x $PATHS paths)"
    for client in rix nix26; do
        for kind in rix nix26 nix28; do query_run "q-$client-$kind" "$kind" "$client"; done
        echo "-- client: $client"
        header
        for kind in rix nix26 nix28; do row "daemon: $kind" "q-$client-$kind"; done
        printf 'nix-daemon 2.26 / rix daemon: wall %sx, server CPU %sx, server PSS %sx\n' \
            "$(ratio "${WALL[q-$client-nix26]}" "${WALL[q-$client-rix]}")" \
            "$(ratio "${SCPU[q-$client-nix26]}" "${SCPU[q-$client-rix]}")" \
            "$(ratio "${SPSS[q-$client-nix26]}" "${SPSS[q-$client-rix]}")"
        printf 'nix-daemon 2.8 / rix daemon:  wall %sx, server CPU %sx\n' \
            "$(ratio "${WALL[q-$client-nix28]}" "${WALL[q-$client-rix]}")" \
            "$(ratio "${SCPU[q-$client-nix28]}" "${SCPU[q-$client-rix]}")"
    done
fi

# build_run NAME KIND (direct | rix | nix26 | nix28) CLIENT (rix | nix26)
build_run() {
    local name=$1 kind=$2 client=$3 d=$work/$1 url
    mkdir -p "$d"
    if [ "$kind" = direct ]; then
        url=$(local_url "$name")
        timed "$d/client" "$RIX" --store "$url" build "$DAG" --arg n "$N" -j 2 --no-link \
            --option sandbox false >"$d/out" 2>"$d/err"
        read -r WALL[$name] CCPU[$name] _ <"$d/client"
        SCPU[$name]=0 SRSS[$name]=0 SPSS[$name]=0
        return
    fi
    start_daemon "$name" "$kind"
    url=$(sock_url "$name")
    case $client in
    rix) timed "$d/client" "$RIX" --store "$url" build "$DAG" --arg n "$N" -j 2 --no-link \
        >"$d/out" 2>"$d/err" ;;
    nix26) timed "$d/client" "$NIX26" nix-build --store "$url" "$DAG" --arg n "$N" -j 2 \
        --no-out-link >"$d/out" 2>"$d/err" ;;
    esac
    read -r WALL[$name] CCPU[$name] _ <"$d/client"
    stop_daemon "$name"
    read -r SCPU[$name] SRSS[$name] SPSS[$name] <<<"$STOP"
}

if [[ $ONLY == *2* ]]; then
    echo "== 2. bench/dag.nix, $((N + 1)) derivations, evaluated and built from scratch, -j2"
    build_run b-direct direct rix
    build_run b-rix rix rix
    build_run b-nix26 nix26 rix
    build_run b-nix28 nix28 rix
    build_run b-nixbuild-nix26 nix26 nix26
    build_run b-nixbuild-rix rix nix26
    header
    row "rix build, direct (local store)" b-direct
    row "rix build via rix daemon" b-rix
    row "rix build via nix-daemon 2.26" b-nix26
    row "rix build via nix-daemon 2.8" b-nix28
    row "nix-build 2.26 via nix-daemon 2.26" b-nixbuild-nix26
    row "nix-build 2.26 via rix daemon" b-nixbuild-rix
    printf 'via rix daemon / direct: wall %sx (target <= 1.15)\n' \
        "$(ratio "${WALL[b-rix]}" "${WALL[b-direct]}")"
    printf 'via nix-daemon 2.26 / via rix daemon (rix client): wall %sx, client+server CPU %sx (target >= 2)\n' \
        "$(ratio "${WALL[b-nix26]}" "${WALL[b-rix]}")" \
        "$(ratio "$(echo "${CCPU[b-nix26]} + ${SCPU[b-nix26]}" | bc -l)" "$(echo "${CCPU[b-rix]} + ${SCPU[b-rix]}" | bc -l)")"
    printf 'nix-build via nix-daemon 2.26 / rix build via rix daemon: wall %sx, client+server CPU %sx\n' \
        "$(ratio "${WALL[b-nixbuild-nix26]}" "${WALL[b-rix]}")" \
        "$(ratio "$(echo "${CCPU[b-nixbuild-nix26]} + ${SCPU[b-nixbuild-nix26]}" | bc -l)" "$(echo "${CCPU[b-rix]} + ${SCPU[b-rix]}" | bc -l)")"
fi

if [[ $ONLY == *3* ]]; then
    echo "== 3. $IDLE idle connections (handshake done), memory of the daemon's process tree"
    declare -A IDLE_BEFORE IDLE_AFTER
    for kind in rix nix26 nix28; do
        name=i-$kind
        mkdir -p "$work/$name"
        nix-store --store "$(local_url "$name")" --add "$work/files/f1" >/dev/null 2>&1
        start_daemon "$name" "$kind"
        pid=$(cat "$work/$name/pid")
        IDLE_BEFORE[$kind]=$(python3 "$PROCS" tree "$pid")
        IDLE_AFTER[$kind]=$(python3 "$PROCS" idle "$work/$name/sock" "$IDLE" "$pid")
        stop_daemon "$name"
        echo "$kind: alone: ${IDLE_BEFORE[$kind]}; with $IDLE connections: ${IDLE_AFTER[$kind]}"
    done
    pss() { echo "$1" | sed 's/.*pss_kib=\([0-9]*\).*/\1/'; }
    rss() { echo "$1" | sed 's/.*rss_kib=\([0-9]*\).*/\1/'; }
    for kind in rix nix26 nix28; do
        printf '%-6s sum of PSS %7.1f MiB (%5.0f KiB per connection), sum of RSS %7.1f MiB\n' "$kind" \
            "$(echo "$(pss "${IDLE_AFTER[$kind]}") / 1024" | bc -l)" \
            "$(echo "($(pss "${IDLE_AFTER[$kind]}") - $(pss "${IDLE_BEFORE[$kind]}")) / $IDLE" | bc -l)" \
            "$(echo "$(rss "${IDLE_AFTER[$kind]}") / 1024" | bc -l)"
    done
    printf 'nix-daemon 2.26 / rix daemon, sum of PSS: %sx; sum of RSS: %sx\n' \
        "$(ratio "$(pss "${IDLE_AFTER[nix26]}")" "$(pss "${IDLE_AFTER[rix]}")")" \
        "$(ratio "$(rss "${IDLE_AFTER[nix26]}")" "$(rss "${IDLE_AFTER[rix]}")")"
fi

if [[ $ONLY == *4* ]]; then
    echo "== 4. $CONNS connections one after the other (rix path-info of one path each)"
    header
    for kind in rix nix26 nix28; do
        name=c-$kind d=$work/c-$kind
        mkdir -p "$d"
        nix-store --store "$(local_url "$name")" --add "$work/files/f1" >"$d/paths" 2>/dev/null
        start_daemon "$name" "$kind"
        timed "$d/client" bash -c "for i in \$(seq $CONNS); do '$RIX' path-info --store '$(sock_url "$name")' \$(cat '$d/paths') >/dev/null; done"
        read -r WALL[$name] CCPU[$name] _ <"$d/client"
        stop_daemon "$name"
        read -r SCPU[$name] SRSS[$name] SPSS[$name] <<<"$STOP"
        row "daemon: $kind" "$name"
    done
    for kind in rix nix26 nix28; do
        printf '%-6s server CPU per connection: %.2f ms\n' "$kind" "$(echo "${SCPU[c-$kind]} * 1000 / $CONNS" | bc -l)"
    done
    printf 'nix-daemon 2.26 / rix daemon: wall %sx, server CPU %sx\n' \
        "$(ratio "${WALL[c-nix26]}" "${WALL[c-rix]}")" "$(ratio "${SCPU[c-nix26]}" "${SCPU[c-rix]}")"
fi

if [[ $ONLY == *5* ]]; then
    echo "== 5. $QUERIES path-info queries over one connection (requests written ahead)"
    header
    for kind in rix nix26 nix28; do
        name=o-$kind d=$work/o-$kind
        mkdir -p "$d"
        nix-store --store "$(local_url "$name")" --add "$work"/files/* >"$d/paths" 2>/dev/null
        start_daemon "$name" "$kind"
        timed "$d/client" python3 "$PROCS" query "$d/sock" "$d/paths" "$QUERIES" >"$d/elapsed"
        # Wall: from the first request to the last reply (the client's own
        # start-up left out); client CPU: the Python client's, start-up included.
        read -r _ CCPU[$name] _ <"$d/client"
        WALL[$name]=$(cat "$d/elapsed")
        stop_daemon "$name"
        read -r SCPU[$name] SRSS[$name] SPSS[$name] <<<"$STOP"
        row "daemon: $kind" "$name"
    done
    printf 'nix-daemon 2.26 / rix daemon: wall %sx, server CPU %sx (target >= 3)\n' \
        "$(ratio "${WALL[o-nix26]}" "${WALL[o-rix]}")" "$(ratio "${SCPU[o-nix26]}" "${SCPU[o-rix]}")"
    printf 'nix-daemon 2.8 / rix daemon:  wall %sx, server CPU %sx\n' \
        "$(ratio "${WALL[o-nix28]}" "${WALL[o-rix]}")" "$(ratio "${SCPU[o-nix28]}" "${SCPU[o-rix]}")"
fi
