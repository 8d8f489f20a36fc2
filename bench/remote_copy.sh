#!/usr/bin/env bash
# Copying an input closure to a build machine over real SSH (issue 17, item 5(b)),
# rix against Nix 2.26 side by side in one run.
#
# Workload: COUNT (300) store paths of SIZE (1 MiB) incompressible random bytes each,
# each referring to the one before (a chain: text paths), copied from a local store
# to a "machine": a fresh store root behind a real sshd on a loopback port
# (remote-store=local?root=..., a new one for every run; nothing deleted until the end).
#   rix-ssh-ng   rix copy --to ssh-ng://  (remote-program = rix daemon)
#   rix-ssh      rix copy --to ssh://     (remote-program = rix store serve)
#   nix-ssh-ng   nix copy --to ssh-ng://  (Nix 2.26, remote-program = nix-daemon: no rix anywhere)
#   nix-ssh      nix copy --to ssh://     (Nix 2.26, remote-program = nix-store)
#   rix-to-nix-ssh-ng  rix copy --to ssh-ng:// a Nix 2.26 machine (rix's client alone)
# sshd: RIX_SSHD, else /usr/sbin/sshd, else Debian's openssh-server unpacked under
# RIX_SSHD_DIR (as .ci/run does). Needs hyperfine, ssh/ssh-keygen, Nix 2.26
# (NIX_CURRENT, default /work/shared/tools/nix-current), a release build of rix.
# Usage: bench/remote_copy.sh   (COUNT=n SIZE=bytes RUNS=n RIX=path BENCH_DIR=dir)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RIX=${RIX:-$ROOT/target/release/rix}
# NIX_CURRENT= (empty) compares with the Nix on PATH instead (Nix 2.8 here).
NIXC=${NIX_CURRENT-/work/shared/tools/nix-current}
nixcmd() { if [ -n "$NIXC" ]; then echo "$NIXC $1"; else PATH=$PATH:/usr/sbin:/sbin command -v "$1"; fi; }
COUNT=${COUNT:-300}
SIZE=${SIZE:-1048576}
RUNS=${RUNS:-5}
[ -x "$RIX" ] || cargo build --release -p rix-cli
for tool in hyperfine ssh ssh-keygen python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
SSHD=${RIX_SSHD:-}
[ -n "$SSHD" ] || { [ -x /usr/sbin/sshd ] && SSHD=/usr/sbin/sshd; } || true
[ -n "$SSHD" ] || { [ -n "${RIX_SSHD_DIR:-}" ] && SSHD=$RIX_SSHD_DIR/usr/sbin/sshd; } || true
[ -n "$SSHD" ] && [ -x "$SSHD" ] || { echo "no sshd: set RIX_SSHD (see .ci/run)" >&2; exit 1; }
sshd_root=$(dirname "$(dirname "$(dirname "$SSHD")")")
W=${BENCH_DIR:-$(mktemp -d /tmp/rix-bench-rcopy.XXXXXX)}
mkdir -p "$W"
chmod 755 "$W"
cd "$W"

# --- the machine: sshd on a free loopback port, generated keys --------------
if [ "$(id -u)" = 0 ]; then
    id sshd >/dev/null 2>&1 || { echo "sshd needs its privilege separation user: useradd --system sshd" >&2; exit 1; }
    mkdir -p /run/sshd
fi
rm -f host_key host_key.pub client_key client_key.pub
ssh-keygen -q -t ed25519 -N "" -f host_key
ssh-keygen -q -t ed25519 -N "" -f client_key
cp client_key.pub authorized_keys
mkdir -p machine-conf
printf 'substituters =\nsandbox = false\n' > machine-conf/nix.conf
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
USER_NAME=$(id -un)
cat > sshd_config <<EOF
ListenAddress 127.0.0.1
Port $PORT
HostKey $W/host_key
AuthorizedKeysFile $W/authorized_keys
PidFile $W/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers $USER_NAME
MaxStartups 100
UseDNS no
SetEnv NIX_CONF_DIR=$W/machine-conf XDG_CACHE_HOME=$W/machine-cache
EOF
SSHD_LIBS=$(ls -d "$sshd_root"/usr/lib/*-linux-gnu 2>/dev/null | tr '\n' ':' || true)
LD_LIBRARY_PATH=$SSHD_LIBS "$SSHD" -D -e -f "$W/sshd_config" 2> sshd.log &
SSHD_PID=$!
trap 'kill $SSHD_PID 2>/dev/null || true' EXIT
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 host_key.pub)" > known_hosts
export NIX_SSHOPTS="-F /dev/null -p $PORT -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$W/known_hosts -i $W/client_key"
for _ in $(seq 100); do
    # shellcheck disable=SC2086
    ssh $NIX_SSHOPTS "$USER_NAME@127.0.0.1" true 2>/dev/null && break
    sleep 0.1
done
# shellcheck disable=SC2086
ssh $NIX_SSHOPTS "$USER_NAME@127.0.0.1" true
HOST=$USER_NAME@127.0.0.1
echo "== $(LD_LIBRARY_PATH=$SSHD_LIBS "$SSHD" -V 2>&1 | head -1 || true) on port $PORT"

# --- the closure --------------------------------------------------------------
if [ ! -s top.txt ]; then
    echo "== preparing $COUNT paths of $SIZE random bytes, chained, in $W/src"
    prev=""
    for i in $(seq -w 1 "$COUNT"); do
        ref=()
        [ -n "$prev" ] && ref=(--reference "$prev")
        prev=$(head -c "$SIZE" /dev/urandom | "$RIX" --store "local?root=$W/src" store add-text "chain-$i" "${ref[@]}")
    done
    echo "$prev" > top.txt
fi
TOP=$(cat top.txt)
echo "== closure: $("$RIX" --store "local?root=$W/src" path-info -r "$TOP" | wc -l) paths, $(du -sh src/nix/store | cut -f1)"

enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
# A fresh machine store per run: the counter moves in --prepare.
echo 0 > run
url() { echo "$1://$HOST?remote-program=$(enc "$2")&remote-store=$(enc "local?root=$W/dst-$3-")\$(cat $W/run)"; }
SRC="local?root=$W/src"
NIXCFG=$'experimental-features = nix-command\nsubstituters ='
export NIX_CONFIG=$NIXCFG RIX_CONFIG=$'substituters ='

hyperfine --runs "$RUNS" --export-json remote_copy.json --export-markdown remote_copy.md \
    --prepare "echo \$((\$(cat $W/run) + 1)) > $W/run; sync" \
    -n rix-ssh-ng "$RIX --store '$SRC' copy --no-check-sigs --to \"$(url ssh-ng "$RIX daemon" rix-ng)\" $TOP" \
    -n rix-ssh "$RIX --store '$SRC' copy --no-check-sigs --to \"$(url ssh "$RIX store serve" rix-ssh)\" $TOP" \
    -n nix-ssh-ng "$(nixcmd nix) copy --no-check-sigs --store '$SRC' --to \"$(url ssh-ng "$(nixcmd nix-daemon)" nix-ng)\" $TOP" \
    -n nix-ssh "$(nixcmd nix) copy --no-check-sigs --store '$SRC' --to \"$(url ssh "$(nixcmd nix-store)" nix-ssh)\" $TOP" \
    -n rix-to-nix-ssh-ng "$RIX --store '$SRC' copy --no-check-sigs --to \"$(url ssh-ng "$(nixcmd nix-daemon)" rix2nix-ng)\" $TOP"

# Every machine got the whole closure.
for d in "$W"/dst-*; do
    n=$("$RIX" --store "local?root=$d" path-info -r "$TOP" | wc -l)
    [ "$n" = "$COUNT" ] || { echo "$d has $n paths, not $COUNT" >&2; exit 1; }
done
cat remote_copy.md
python3 - "$W/remote_copy.json" <<'EOF'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
for a, b in [("nix-ssh-ng", "rix-ssh-ng"), ("nix-ssh", "rix-ssh")]:
    print(f"{b}: {r[a] / r[b]:.2f}x faster than {a}")
EOF
[ -n "${BENCH_DIR:-}" ] || { chmod -R u+w "$W"; rm -rf "$W"; }
