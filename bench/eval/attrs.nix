# Build a 100,000-attribute set and query every attribute.
let
  n = 100000;
  names = builtins.genList (i: "attr${toString i}") n;
  set = builtins.listToAttrs (map (name: { inherit name; value = builtins.stringLength name; }) names);
  total = builtins.foldl' (acc: name: acc + set.${name}) 0 names;
in
{
  size = builtins.length (builtins.attrNames set);
  inherit total;
  has = set ? attr99999;
}
