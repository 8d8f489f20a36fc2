#!/usr/bin/env bash
# Early cutoff of content-addressed derivations, rix against Nix 2.26 in one run.
#
# Workload: bench/ca_chain.nix, N (500) floating CA derivations over one source
# file, as a chain and as a wide DAG. The lowest derivation drops the source's
# comment lines, so changing a comment rebuilds it with an unchanged output and
# everything above is cut off (resolved to derivations realised already).
#   1. from-scratch CA build (rix and Nix 2.26), and rix's input-addressed one
#      of the same graph (ca = false): the cost of CA (<= 1.2x wanted)
#   2. cutoff rebuild after a comment change (hyperfine, a new comment before
#      each run): rix and Nix each rebuild exactly one derivation
# Each tool has its own fresh store; nothing is deleted until the end.
# Needs: hyperfine, Nix 2.26 (NIX_CURRENT, default /work/shared/tools/nix-current),
# a release build of rix (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
RIX=${RIX:-$PWD/target/release/rix}
NIXC=${NIX_CURRENT:-/work/shared/tools/nix-current}
N=${N:-500}
RUNS=${RUNS:-5}
JOBS=${JOBS:-2}
FILE=$PWD/bench/ca_chain.nix
work=$(mktemp -d /tmp/cacXXXX)
chmod 755 "$work"
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
export NIX_CONFIG=$'experimental-features = nix-command ca-derivations\nsandbox = false\nsubstituters =\nbuild-hook ='
url() { echo "local?store=$work/$1/s&state=$work/$1/state&log=$work/$1/log"; }
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
# The build command of each tool for store $1, shape $2, ca $3.
nix_cmd() { echo "$NIXC nix-build --store '$(url "$1")' $FILE --arg n $N --argstr shape $2 --arg ca $3 --arg src $work/$1/src.txt --no-out-link -j $JOBS"; }
rix_cmd() { echo "$RIX --store '$(url "$1")' build --extra-experimental-features ca-derivations --option sandbox false $FILE --arg n $N --argstr shape $2 --arg ca $3 --arg src $work/$1/src.txt --no-link -j $JOBS"; }
setup() { mkdir -p "$work/$1"; chmod 755 "$work/$1"; printf '# v1\nhello\n' > "$work/$1/src.txt"; }

for shape in chain wide; do
    echo "== $shape of $N derivations: from-scratch build, -j$JOBS"
    for s in "$shape-rix-ia" "$shape-rix" "$shape-nix"; do setup "$s"; done
    t_ia=$(secs sh -c "$(rix_cmd "$shape-rix-ia" "$shape" false)")
    t_rix=$(secs sh -c "$(rix_cmd "$shape-rix" "$shape" true)")
    t_nix=$(secs sh -c "$(nix_cmd "$shape-nix" "$shape" true)")
    printf 'rix, input-addressed:    %7.2f s\n' "$t_ia"
    printf 'rix, content-addressed:  %7.2f s  (%.2fx the input-addressed build)\n' "$t_rix" "$(echo "$t_rix / $t_ia" | bc -l)"
    printf 'Nix 2.26, content-addr.: %7.2f s\n' "$t_nix"

    echo "== $shape: rebuild after a comment change in the source (cut off above the lowest)"
    # How many derivations each rebuilds (one run, outside the timing).
    for tool in rix nix; do
        printf '# once\nhello\n' > "$work/$shape-$tool/src.txt"
        built=$(sh -c "$(${tool}_cmd "$shape-$tool" "$shape" true)" 2>&1 | grep -c "^building '" || true)
        echo "$tool rebuilt $built derivation(s)"
    done
    hyperfine --runs "$RUNS" --export-markdown "$work/$shape.md" \
        --prepare "printf '# %s\nhello\n' \$(date +%s%N) > $work/$shape-rix/src.txt; printf '# %s\nhello\n' \$(date +%s%N) > $work/$shape-nix/src.txt" \
        -n nix "$(nix_cmd "$shape-nix" "$shape" true)" \
        -n rix "$(rix_cmd "$shape-rix" "$shape" true)" | grep -E 'Time|±|faster'
done
