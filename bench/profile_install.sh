#!/usr/bin/env bash
# `rix profile install` of many store paths against Nix 2.26's `nix profile
# install`, side by side on one store, in one run.
#
# Workload: $N (500) small packages (each `bin/<name>` and `share/<name>/doc`)
# added to a fresh store with `rix store add`; then one command installs all
# of them into a new profile: building the user environment (500 links in
# `bin`, 500 in `share`), `manifest.json`, adding the profile path, the
# generation link and its GC root. Every run gets a profile directory of its
# own (made by --prepare; nothing is deleted until the end). Both tools make
# the same profile store path (checked).
# Needs: hyperfine, RIX_NIX_CURRENT (the Nix 2.26 launcher), a build of rix.
set -euo pipefail
cd "$(dirname "$0")/.."
RIX=${RIX:-$PWD/target/release/rix}
NIXC=${RIX_NIX_CURRENT:?set RIX_NIX_CURRENT to the Nix 2.26 launcher}
N=${N:-500}
work=$(mktemp -d /tmp/profbenchXXX)
chmod 755 "$work"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
S=$work/s
url="local?store=$S/store&state=$S/state&log=$S/log"
export NIX_CONFIG=$'experimental-features = nix-command\nsubstituters =\nsandbox = false'
export HOME=$work/home
mkdir -p "$HOME" "$work/src" "$work/runs"
for i in $(seq 1 "$N"); do
  d=$work/src/pkg$i-1.$i
  mkdir -p "$d/bin" "$d/share/pkg$i"
  printf '#!/bin/sh\necho %s\n' "$i" > "$d/bin/pkg$i"
  echo "doc $i" > "$d/share/pkg$i/doc"
done
"$RIX" --store "$url" store add "$work"/src/* > "$work/paths"
mapfile -t paths < "$work/paths"
echo "$N packages in $S"

# A fresh profile directory per run, its name in $work/current.
prep='d=$(mktemp -d '"$work"'/runs/XXXX) && echo $d > '"$work"'/current'
hyperfine -N --warmup 1 --runs "${RUNS:-10}" \
  --prepare "bash -c '$prep'" \
  -n "nix profile install ($N paths)" \
  "bash -c '\"$NIXC\" nix --store \"$url\" profile install --profile \$(cat $work/current)/p \$(cat $work/paths)'" \
  -n "rix profile install ($N paths)" \
  "bash -c '\"$RIX\" --store \"$url\" profile install --profile \$(cat $work/current)/p \$(cat $work/paths)'"

# The same profile path from both.
"$NIXC" nix --store "$url" profile install --profile "$work/nix-p" "${paths[@]}"
"$RIX" --store "$url" profile install --profile "$work/rix-p" "${paths[@]}"
[ "$(readlink "$work/nix-p-1-link")" = "$(readlink "$work/rix-p-1-link")" ] && echo "same profile path: $(readlink "$work/rix-p-1-link")"
