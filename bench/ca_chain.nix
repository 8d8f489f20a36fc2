# Content-addressed (or, with ca = false, input-addressed) derivations for
# bench/ca_cutoff.sh: n derivations over one source file, in a chain (each
# depends on the one before) or wide (n - 2 derivations on the lowest one and
# a top-level one over all of them). The lowest one drops the source's
# comment lines, so a changed comment rebuilds it with an unchanged output.
{ n ? 500, shape ? "chain", ca ? true, src }:
let
  caAttrs = if ca then {
    __contentAddressed = true;
    outputHashMode = "recursive";
    outputHashAlgo = "sha256";
  } else { };
  mk = name: script: derivation ({
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" script ];
  } // caAttrs);
  low = mk "low" "while read -r l; do case $l in '#'*) ;; *) echo $l;; esac; done < ${src} > $out";
  chain = builtins.foldl' (prev: i: mk "c${toString i}" "echo ${prev} > $out")
    low (builtins.genList (i: i) (n - 1));
  wide = mk "top" "echo ${toString (builtins.genList (i: mk "w${toString i}" "echo ${low} ${toString i} > $out") (n - 2))} > $out";
in if shape == "chain" then chain else wide
