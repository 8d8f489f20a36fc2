# shellcheck shell=bash
# `use rix` for direnv: load a project's development environment with
# `rix print-dev-env`, as `use flake` (nix-direnv) does with Nix.
#
# Install: source this file from ~/.config/direnv/direnvrc, e.g.
#   source /path/to/rix/contrib/direnv/use_rix.sh
# then, in a project's .envrc:
#   use rix                 # the flake in this directory (devShells first)
#   use rix .#other         # another installable
#   use rix -f shell.nix    # a Nix file
#
# The environment is kept in .direnv/rix-env.sh and made again when
# flake.nix, flake.lock, shell.nix or default.nix change; rix's own cache
# makes that cheap when nothing that matters changed. The environment also
# becomes a profile (.direnv/rix-profile), a GC root, so that collecting
# garbage does not remove what the shell uses.
use_rix() {
  local dir=.direnv
  local env_file=$dir/rix-env.sh
  mkdir -p "$dir"
  local f
  for f in flake.nix flake.lock shell.nix default.nix; do
    [[ -e $f ]] && watch_file "$f"
  done
  local refresh=
  if [[ ! -s $env_file ]]; then
    refresh=1
  else
    for f in flake.nix flake.lock shell.nix default.nix .envrc; do
      if [[ -e $f && $f -nt $env_file ]]; then refresh=1; fi
    done
  fi
  if [[ -n $refresh ]]; then
    local tmp
    tmp=$(mktemp "$dir/rix-env.XXXXXX")
    if rix print-dev-env --profile "$PWD/$dir/rix-profile" "$@" >"$tmp"; then
      mv "$tmp" "$env_file"
    else
      rm -f "$tmp"
      log_error "use rix: rix print-dev-env failed"
      [[ -s $env_file ]] || return 1
      log_status "use rix: using the previous environment"
    fi
  fi
  # The script is bash; direnv evaluates .envrc in bash.
  # shellcheck disable=SC1090
  source "$env_file"
}
