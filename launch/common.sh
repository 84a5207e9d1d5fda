# Helpers sourced by the launch scripts (not run on its own).

# Prints "error: MESSAGE" to stderr and exits with status 2.
die() { echo "error: $*" >&2; exit 2; }

# Prints the command, shell-quoted after "+", and runs it unless $dry_run is 1.
run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [[ ${dry_run:-0} -eq 0 ]]; then "$@"; fi
}

# Dies unless every argument has the form --config.<field>=<value>.
check_overrides() {
  local o
  for o in "$@"; do
    [[ "$o" == --config.*=* ]] || die "--override='$o': expected --config.<field>=<value>."
  done
}

# Dies unless $1 (FILE or FILE:VARIANT) names a config file under the repo root.
check_config_file() {
  [[ -n "$1" ]] || die "--config=FILE is required."
  [[ -f "${1%%:*}" ]] || die "--config='$1': no such file (paths are relative to the repo root)."
}
