# A DAG of `n` small derivations (shell builtins only), each referencing about 3
# earlier ones, plus a top-level one that depends on all of them.
{ n ? 2000, salt ? "" }:
let
  pick = i: k: (i * (k * 7 + 3) + k * 13) - ((i * (k * 7 + 3) + k * 13) / i) * i;
  node = i: derivation {
    name = "node-${toString i}";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    inherit salt;
    deps = if i == 0 then [ ] else map (k: builtins.elemAt nodes (pick i k)) [ 0 1 2 ];
    args = [ "-c" "echo $deps > $out" ];
  };
  nodes = builtins.genList node n;
in derivation {
  name = "dag-top";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  inherit salt;
  deps = nodes;
  args = [ "-c" "echo $deps > $out" ];
}
