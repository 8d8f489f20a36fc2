# A bit of everything: recursive sets, with, string building, sorting.
let
  lib = rec {
    range = a: b: builtins.genList (i: a + i) (b - a + 1);
    sum = builtins.foldl' (a: b: a + b) 0;
    mapAttrs' = f: set: builtins.listToAttrs (map (n: f n set.${n}) (builtins.attrNames set));
  };
  xs = lib.range 1 20000;
  strs = map (i: "item-${toString i}") xs;
  sorted = builtins.sort (a: b: a > b) xs;
  set = builtins.listToAttrs (map (s: { name = s; value = builtins.stringLength s; }) strs);
  set2 = lib.mapAttrs' (n: v: { name = "x${n}"; value = v * 2; }) set;
in
with lib;
{
  total = sum xs;
  first = builtins.head sorted;
  len = builtins.length (builtins.attrNames set2);
  joined = builtins.stringLength (builtins.concatStringsSep "," strs);
}
