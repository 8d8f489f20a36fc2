#!/usr/bin/env bash
# Instantiation, cold and warm: `rix instantiate` against Nix 2.26
# (/work/shared/tools/nix-current) and Nix 2.8 (`nix-instantiate` on PATH) on
# bench/dag.nix, side by side in one run, for a DAG of 2,000 and of 10,000
# derivations (SIZES="2000 10000"; the bigger one so that start-up does not
# hide the engine).
#
#   cold: into an empty store; every run gets a store of its own (see below)
#   warm: again into a store where every .drv is already valid (evaluating an
#         unchanged project)
#
# Wall time (median) and CPU time (user + system, mean) from hyperfine, peak
# RSS from /usr/bin/time; the ratios are Nix / rix ("rix faster").
# Public tools only: hyperfine, /usr/bin/time. Nix 2.26 runs through its
# loader directly (as nix-current does, without the wrapper's shell).
#   RUNS (warm, default 10), COLD_RUNS (default 5; 3 for 10,000), SIZES
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release -q -p rix-cli
rix=$(realpath ../target/release/rix)
runs=${RUNS:-10}
sizes=${SIZES:-2000 10000}
nix_current=/work/shared/tools/nix-current
tools=(rix)
declare -A cmd=([rix]="$rix")
if root=$("$nix_current" --root 2>/dev/null); then
  libs="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu"
  cmd[nix226]="$root/lib64/ld-linux-x86-64.so.2 --library-path $libs --argv0 nix-instantiate $root/usr/bin/nix-instantiate"
  tools+=(nix226)
else
  echo "(no Nix 2.26: $nix_current could not install it)"
fi
if command -v nix-instantiate >/dev/null; then
  cmd[nix28]=nix-instantiate
  tools+=(nix28)
fi

# Every run gets a store of its own, and none is deleted until the end: on
# ext4 without a journal the kernel scans past recently deleted inodes on
# every file creation, so deleting the last run's store would slow the next
# run (see docs/performance.md, Evaluation).
tmp=$(mktemp -d /tmp/rix-inst-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
url() { echo "local?store=$tmp/$1/store&state=$tmp/$1/state&log=$tmp/$1/log"; }

# Prints median wall, mean CPU and the ratios against rix (the first command).
report() {
  python3 - "$1" "${tools[@]}" <<'EOF'
import json, statistics, sys
r = json.load(open(sys.argv[1]))["results"]
names = sys.argv[2:]
wall = [statistics.median(x["times"]) * 1000 for x in r]
cpu = [(x["user"] + x["system"]) * 1000 for x in r]
for n, w, c, x in zip(names, wall, cpu, r):
    line = f"  {n:7} wall {w:8.1f} ms (median)   CPU {c:8.1f} ms (user {x['user']*1000:.1f} + sys {x['system']*1000:.1f})"
    if n != names[0]:
        line += f"   rix faster: wall {w / wall[0]:.2f}x, CPU {c / cpu[0]:.2f}x"
    print(line)
EOF
}

rss() { # tool store args...: peak RSS of one run, in MB
  local t=$1 s=$2; shift 2
  /usr/bin/time -o "$tmp/rss" -f %M ${cmd[$t]} --store "$(url "$s")" "$@" >/dev/null 2>&1
  echo $(( $(cat "$tmp/rss") / 1024 ))
}

invocation() { # tool store size
  case $1 in
    rix) echo "${cmd[rix]} --store '$(url "$2")' instantiate --arg n $3 ../dag.nix" ;;
    *) echo "${cmd[$1]} --store '$(url "$2")' --arg n $3 ../dag.nix" ;;
  esac
}
args_of() { # tool size: arguments after --store for rss()
  case $1 in
    rix) echo "instantiate --arg n $2 ../dag.nix" ;;
    *) echo "--arg n $2 ../dag.nix" ;;
  esac
}

mkdir -p "$tmp/bench" && cp dag.nix "$tmp/dag.nix"
cd "$tmp/bench"
for n in $sizes; do
  cold_runs=${COLD_RUNS:-$([ "$n" -gt 5000 ] && echo 3 || echo 5)}
  echo "== bench/dag.nix, n = $n ($((n + 1)) derivations), cold: into an empty store, $cold_runs runs"
  # Each run's stores move aside first (nothing is deleted).
  fresh="mkdir -p $tmp/old && for t in ${tools[*]}; do [ ! -e $tmp/cold-\$t ] || mv $tmp/cold-\$t \$(mktemp -d -p $tmp/old); done"
  cmds=()
  for t in "${tools[@]}"; do cmds+=("$(invocation "$t" "cold-$t" "$n")"); done
  hyperfine -w 1 -r "$cold_runs" --prepare "$fresh" --export-json "$tmp/cold.json" "${cmds[@]}" >/dev/null 2>&1
  report "$tmp/cold.json"
  sh -c "$fresh"
  line="  peak RSS:"
  for t in "${tools[@]}"; do
    # shellcheck disable=SC2046
    line+=" $t $(rss "$t" "cold-$t" $(args_of "$t" "$n")) MB"
  done
  echo "$line"

  echo "== bench/dag.nix, n = $n, warm: every .drv already valid, $runs runs"
  cmds=()
  for t in "${tools[@]}"; do
    cmds+=("$(invocation "$t" "warm-$t-$n" "$n")")
    sh -c "$(invocation "$t" "warm-$t-$n" "$n")" >/dev/null 2>&1
  done
  hyperfine -N -w 2 -r "$runs" --export-json "$tmp/warm.json" "${cmds[@]}" >/dev/null 2>&1
  report "$tmp/warm.json"
  line="  peak RSS:"
  for t in "${tools[@]}"; do
    # shellcheck disable=SC2046
    line+=" $t $(rss "$t" "warm-$t-$n" $(args_of "$t" "$n")) MB"
  done
  echo "$line"
done
