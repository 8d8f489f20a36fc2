#!/usr/bin/env python3
"""Generate a module-system workload: N NixOS-style modules for lib.evalModules.

usage: gen.py N OUTDIR

Each module declares options of the common types (bool, str, port, enum,
nullOr lines, listOf, attrsOf, attrsOf submodule) and defines its own and its
neighbours' options with mkDefault / mkIf / mkMerge / mkForce / mkOrder, and
contributes to options shared by all modules (a listOf merged over N
definitions, an attrsOf submodule with N entries), as a NixOS configuration
does. OUTDIR/default.nix takes `lib` and returns a hash of the whole
configuration as JSON, so evaluating it forces every option.
"""
import os
import sys


COMMON = """{ lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  options = {
    environment.packages = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    environment.variables = mkOption {
      type = types.attrsOf types.str;
      default = { };
    };
    services = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          { name, config, ... }:
          {
            options = {
              enable = mkOption {
                type = types.bool;
                default = false;
              };
              description = mkOption {
                type = types.str;
                default = "service ${name}";
              };
              after = mkOption {
                type = types.listOf types.str;
                default = [ ];
              };
              environment = mkOption {
                type = types.attrsOf (types.either types.str types.int);
                default = { };
              };
              serviceConfig = mkOption {
                type = types.submodule {
                  freeformType = types.attrsOf types.str;
                  options.Restart = mkOption {
                    type = types.enum [ "no" "always" "on-failure" ];
                    default = "no";
                  };
                };
                default = { };
              };
              script = mkOption {
                type = types.lines;
                default = "";
              };
            };
            config.after = lib.mkIf config.enable [ "network.target" ];
          }
        )
      );
    };
  };
}
"""

MODULE = """{{ lib, config, ... }}:
let
  inherit (lib) mkOption types mkIf mkMerge mkDefault mkForce mkOrder;
  cfg = config.m{i};
in
{{
  options.m{i} = {{
    enable = mkOption {{
      type = types.bool;
      default = false;
      description = "Whether to enable module {i}.";
    }};
    name = mkOption {{
      type = types.str;
      default = "m{i}";
    }};
    port = mkOption {{
      type = types.port;
      default = {port};
    }};
    mode = mkOption {{
      type = types.enum [ "a" "b" "c" ];
      default = "a";
    }};
    tags = mkOption {{
      type = types.listOf types.str;
      default = [ ];
    }};
    env = mkOption {{
      type = types.attrsOf types.str;
      default = {{ }};
    }};
    extraConfig = mkOption {{
      type = types.nullOr types.lines;
      default = null;
    }};
    users = mkOption {{
      default = {{ }};
      type = types.attrsOf (
        types.submodule {{
          options = {{
            uid = mkOption {{ type = types.int; }};
            shell = mkOption {{
              type = types.str;
              default = "/bin/sh";
            }};
            groups = mkOption {{
              type = types.listOf types.str;
              default = [ ];
            }};
          }};
        }}
      );
    }};
  }};

  config = mkMerge [
    {{
      m{i}.enable = mkDefault true;
      m{i}.tags = [ "t{i}" ];
      m{i}.mode = mkDefault "b";
    }}
    (mkIf cfg.enable {{
      m{i}.env.NAME = cfg.name;
      m{i}.env.PORT = toString cfg.port;
      m{i}.users.u{i} = {{
        uid = {i};
        groups = [ "wheel" "g{g}" ];
      }};
      m{i}.extraConfig = "port ${{toString cfg.port}}";
      environment.packages = [ "pkg-{i}" ];
      environment.variables."M{i}_MODE" = cfg.mode;
      services.s{i} = {{
        enable = true;
        environment.PORT = cfg.port;
        environment.NAME = cfg.name;
        serviceConfig.Restart = "always";
        serviceConfig.User = "u{i}";
        script = ''
          echo starting ${{cfg.name}} on ${{toString cfg.port}}
        '';
      }};
    }})
    (mkIf (cfg.mode == "b") {{
      m{i}.extraConfig = mkOrder 2000 "mode b";
    }})
    {{
      m{prev}.tags = [ "from-m{i}" ];
      m{prev}.env."FROM_M{i}" = "yes";
      m{prev}.users.u{prev}.groups = [ "from-m{i}" ];
      services.s{prev}.after = [ "s{i}.service" ];
    }}
    {{ m{i}.name = mkForce "module-{i}"; }}
  ];
}}
"""

DEFAULT = """{{ lib }}:
let
  eval = lib.evalModules {{
    modules = [ ./common.nix ] ++ map (i: ./m + "/m${{toString i}}.nix") (lib.range 0 {last});
  }};
in
builtins.hashString "sha256" (builtins.toJSON eval.config)
"""


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    os.makedirs(os.path.join(out, "m"), exist_ok=True)
    with open(os.path.join(out, "common.nix"), "w") as f:
        f.write(COMMON)
    for i in range(n):
        prev = (i - 1) % n
        with open(os.path.join(out, "m", f"m{i}.nix"), "w") as f:
            f.write(MODULE.format(i=i, prev=prev, port=1000 + i, g=i % 10))
    with open(os.path.join(out, "default.nix"), "w") as f:
        f.write(DEFAULT.format(last=n - 1))


if __name__ == "__main__":
    main()
