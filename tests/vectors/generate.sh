#!/usr/bin/env bash
# Re-makes tests/vectors/generated/ with real Nix: NAR files, derivations and their
# `nix show-derivation` JSON, a binary cache's narinfos, a NAR listing (.ls) and
# nix.conf samples that Nix accepts. Everything in generated/ comes out of this script.
#
# Needs Nix 2.8 (Debian bookworm's nix-bin: nix-store, nix-instantiate, nix) on PATH,
# and a current Nix (2.26) for the .ls listing, run as `$NIX_CURRENT CMD ARGS`
# (default: nix-current on PATH). Run as root; the builds use /bin/busybox (busybox-static).
#   bash tests/vectors/generate.sh
# Outputs are deterministic except the narinfos' signing key (made fresh on each run,
# its public half written beside them) and so their signatures.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/generated"
NIX_CURRENT=${NIX_CURRENT:-nix-current}
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export NIX_CONFIG='experimental-features = nix-command
sandbox = false
build-users-group =
substituters =
fsync-metadata = false'
# A chroot store: its store directory is /nix/store, its files live under $root.
root="$work/root"
store=(--store "$root")

rm -rf "$out"
mkdir -p "$out"/{nar,derivation/ok,narinfo,nix-conf}

## NAR files: nix-store --dump of small trees.
t="$work/nar"
mkdir -p "$t"
printf 'Hello World!' >"$t/helloworld"
ln -s /nix/store/somewhereelse "$t/symlink"
mkdir -p "$t/complicated/keep"
: >"$t/complicated/.keep"
: >"$t/complicated/keep/.keep"
ln -s /nix/store/somewhereelse "$t/complicated/aa"
mkdir "$t/emptydirectory"
printf '\001' >"$t/onebyteregular"
printf '#!/bin/sh\necho hi\n' >"$t/executable"
chmod +x "$t/executable"
for n in helloworld symlink complicated emptydirectory onebyteregular executable; do
    nix-store --dump "$t/$n" >"$out/nar/$n.nar"
done

## Derivations: instantiated by Nix 2.8, with `nix show-derivation` of each.
d="$work/drv"
mkdir -p "$d"
cat >"$d/drvs.nix" <<'EOF'
let
  bar = algo: hash: derivation {
    name = "bar"; builder = ":"; system = ":";
    outputHashMode = "recursive"; outputHashAlgo = algo; outputHash = hash;
  };
  foo = b: derivation { name = "foo"; builder = ":"; system = ":"; bar = b; };
  bar256 = bar "sha256" "08813cbee9903c62be4c5027726a418a300da4500b2d369d3af9286f4815ceba";
  bar1 = bar "sha1" "0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33";
in {
  inherit bar256 bar1;
  foo256 = foo bar256;
  foo1 = foo bar1;
  multi = derivation { name = "has-multi-out"; builder = ":"; system = ":"; outputs = [ "out" "lib" ]; };
  structured = derivation { name = "structured-attrs"; builder = ":"; system = ":"; __structuredAttrs = true; };
  nested = derivation { name = "nested-json"; builder = ":"; system = ":"; json = builtins.toJSON { hello = "moto\n"; }; };
  unicode = derivation {
    name = "unicode"; builder = ":"; system = ":";
    letters = "räksmörgås\nrødgrød med fløde\nLübeck\n肥猪\nこんにちは / 今日は\n🌮\n";
  };
  latin1 = derivation { name = "latin1"; builder = ":"; system = ":"; chars = import ./latin1.nix; };
  flat-md5 = derivation {
    name = "flat-md5"; builder = ":"; system = ":";
    outputHashMode = "flat"; outputHashAlgo = "md5"; outputHash = "d41d8cd98f00b204e9800998ecf8427e";
  };
  flat-sha512 = derivation {
    name = "flat-sha512"; builder = ":"; system = ":";
    outputHash = "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==";
  };
  # Depends on an output of a multi-output derivation and on a source file.
  user = derivation {
    name = "user"; builder = ":"; system = ":";
    lib = "${(derivation { name = "has-multi-out"; builder = ":"; system = ":"; outputs = [ "out" "lib" ]; }).lib}";
    src = ./latin1.nix;
    args = [ "-e" "a\tb" "\"quoted\"" "back\\slash" ];
  };
}
EOF
# An environment value of bytes C5 C4 D6 (Latin-1 "ÅÄÖ"), not valid UTF-8.
printf '"\305\304\326"\n' >"$d/latin1.nix"
for attr in bar256 bar1 foo256 foo1 multi structured nested unicode latin1 flat-md5 flat-sha512 user; do
    drv=$(nix-instantiate "${store[@]}" "$d/drvs.nix" -A "$attr" 2>"$work/err") || { cat "$work/err" >&2; exit 1; }
    base=$(basename "$drv")
    cp "$root$drv" "$out/derivation/ok/$base"
    nix "${store[@]}" show-derivation "$drv" >"$out/derivation/ok/$base.json"
done
# A derivation that must be refused: the environment variable `name` twice.
foo=$(cd "$out/derivation/ok" && ls ./*-foo.drv | head -1)
sed 's/("name","foo"),/("name","foo"),("name","bar"),/' "$out/derivation/ok/$foo" >"$out/derivation/duplicate.drv"

## A binary cache written by Nix 2.8 (`nix copy`): its narinfos, one after another.
b="$work/cache-src"
mkdir -p "$b/busybox/bin"
cp /bin/busybox "$b/busybox/bin/sh"
nix-store --generate-binary-cache-key rix-test-cache-1 "$work/key.sec" "$out/narinfo/key.pub"
cat >"$b/graph.nix" <<'EOF'
# 60 derivations built by a static busybox's sh; each output names some earlier outputs, so
# references vary in number; every fifth has a second output `dev`. The first
# also names a text path (builtins.toFile, content-addressed) that names another.
let
  n = 60;
  t1 = builtins.toFile "text-one" "plain text\n";
  t2 = builtins.toFile "text-two" "refers to ${t1}\n";
  mk = i: prev:
    let
      two = i - i / 5 * 5 == 0;
      picks = builtins.filter (j: j >= 0 && j < builtins.length prev) [ (i - 1) (i / 2) (i * 3 / 4 - 3) ];
    in derivation ({
      name = "node-${toString i}";
      system = builtins.currentSystem;
      builder = "${./busybox}/bin/sh";
      deps = map (j: builtins.elemAt prev j) picks;
      text = if i == 0 then t2 else "";
      args = [ "-c" (''
        echo "node $name: $deps $text" > $out
      '' + (if two then ''
        echo "$out" > $dev
      '' else "")) ];
    } // (if two then { outputs = [ "out" "dev" ]; } else { }));
  build = i: acc: if i == n then acc else build (i + 1) (acc ++ [ (mk i acc) ]);
  nodes = build 0 [ ];
in nodes ++ map (x: x.dev or x.out) nodes
EOF
nix-build "${store[@]}" "$b/graph.nix" --no-out-link >"$work/built" 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
mapfile -t built < <(sort -u "$work/built")
# Fixed-output (source) paths: nix-store --add (recursive) and --add-fixed (flat).
for i in 1 2 3; do
    mkdir -p "$b/src-$i/sub"
    printf 'source %s\n' "$i" >"$b/src-$i/sub/file"
    built+=("$(nix-store "${store[@]}" --add "$b/src-$i")")
    printf 'flat %s\n' "$i" >"$b/flat-$i"
    built+=("$(nix-store "${store[@]}" --add-fixed sha256 "$b/flat-$i")")
done
# The closure of all those paths, in caches of several compressions.
: >"$work/corpus"
for c in xz bzip2 none; do
    cache="$work/cache-$c"
    nix copy "${store[@]}" --to "file://$cache?compression=$c&secret-key=$work/key.sec" "${built[@]}"
    for f in "$cache"/*.narinfo; do
        # Hydra wrote `System:` after Deriver (some of cache.nixos.org's narinfos have it).
        case "$(basename "$f")" in
        [0-9a]*) sed -i '/^Deriver: /a System: x86_64-linux' "$f" ;;
        esac
        cat "$f" >>"$work/corpus"
        echo >>"$work/corpus"
    done
    # Nix still reads every entry and accepts its signature.
    nix path-info --store "file://$cache" --json --recursive "${built[@]}" >/dev/null
    nix store verify --store "file://$cache" --no-contents --recursive \
        --option trusted-public-keys "$(cat "$out/narinfo/key.pub")" "${built[@]}"
done
zstd -q -19 "$work/corpus" -o "$out/narinfo/narinfo.zst"

## A NAR listing (.ls) as a current Nix writes it beside a NAR in a binary cache.
l="$work/release"
mkdir -p "$l/iso" "$l/nix-support" "$l/bin"
head -c 100000 /dev/zero | tr '\0' 'x' >"$l/iso/nixos-minimal-x86_64-linux.iso"
printf 'file iso /nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-release/iso/nixos-minimal-x86_64-linux.iso\n' >"$l/nix-support/hydra-build-products"
printf 'x86_64-linux\n' >"$l/nix-support/system"
printf '#!/bin/sh\n' >"$l/bin/run"
chmod +x "$l/bin/run"
ln -s ../iso/nixos-minimal-x86_64-linux.iso "$l/bin/iso"
rel=$("$NIX_CURRENT" nix-store --store "$root" --add "$l")
"$NIX_CURRENT" nix --extra-experimental-features nix-command copy --store "$root" \
    --to "file://$work/cache-ls?write-nar-listing=true&compression=none" "$rel"
cp "$work/cache-ls/$(basename "$rel" | cut -c1-32).ls" "$out/nar/release.ls"

## nix.conf samples; Nix 2.8 must read them and give the values the tests expect.
cat >"$out/nix-conf/nix.conf" <<'EOF'
# A nix.conf as a generated NixOS configuration writes it.
allowed-users = *
auto-optimise-store = false
cores = 0
max-jobs = 8
require-sigs = true
sandbox = true
sandbox-fallback = false
substituters = https://nix-community.cachix.org https://cache.nixos.org/
system-features = nixos-test benchmark big-parallel kvm
trusted-public-keys = cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY= nix-community.cachix.org-1:mB9FSh9qf2dCimDSUo8Zy7bkq5CX+/rkCWyvRCYg3Fs=
trusted-substituters =
trusted-users = root alice
extra-platforms = aarch64-linux i686-linux
experimental-features = nix-command

builders-use-substitutes = true
EOF
cat >"$out/nix-conf/other_nix.conf" <<'EOF'
   # Comments in various places, odd spacing.
allowed-users = *
max-jobs =    8
sandbox	=	true
substituters = https://nix-community.cachix.org   https://cache.nixos.org/ # a comment # still a comment
trusted-public-keys = cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY= nix-community.cachix.org-1:mB9FSh9qf2dCimDSUo8Zy7bkq5CX+/rkCWyvRCYg3Fs=
trusted-substituters =

EOF
for f in nix.conf other_nix.conf; do
    cdir="$work/conf-$f"
    mkdir -p "$cdir"
    cp "$out/nix-conf/$f" "$cdir/nix.conf"
    shown=$(NIX_CONF_DIR=$cdir NIX_CONFIG= nix --extra-experimental-features nix-command show-config)
    for want in 'max-jobs = 8' 'sandbox = true' \
        'substituters = https://nix-community.cachix.org https://cache.nixos.org/' 'trusted-substituters = '; do
        grep -qxF "$want" <<<"$shown" || { echo "Nix reads $f differently: no '$want'" >&2; exit 1; }
    done
done
echo "generated into $out"
