# A small build needing nothing but /bin/sh and its builtins: a source file,
# a derivation that makes a message from it, and one that depends on that.
#
#   rix build examples/hello.nix && cat result
#
# (`nix-build examples/hello.nix` gives the same store paths.)
let
  system = builtins.currentSystem;

  greeting = derivation {
    name = "hello-greeting";
    inherit system;
    builder = "/bin/sh";
    src = ./hello/greeting.txt;
    args = [ "-c" ''
      read -r word < "$src"
      echo "$word, world!" > "$out"
    '' ];
  };
in
derivation {
  name = "hello";
  inherit system greeting;
  builder = "/bin/sh";
  args = [ "-c" ''
    read -r line < "$greeting"
    echo "$line (built from $greeting)" > "$out"
  '' ];
}
