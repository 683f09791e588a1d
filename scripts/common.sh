# Shell helpers shared by ./dev and scripts/services.sh (sourced, not run).

say() { printf '==> %s\n' "$*"; }
die() { printf '\n!!! %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# Runs a command as root: directly when we are root (CI, containers), else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif have sudo; then sudo "$@"
  else die "need root (or sudo) to run: $*"
  fi
}

# ---------------------------------------------------------------------------
# System packages (Debian/Ubuntu apt)
# ---------------------------------------------------------------------------

# Checks read a command's whole output before matching: `cmd | grep -q` under
# pipefail fails at random when grep exits early and cmd dies of SIGPIPE.
apt_installed() { grep -q 'install ok installed' <<<"$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)"; }

# apt_install PKG... — installs the missing ones. `apt-get update` only when the
# first attempt fails: the package lists on a warm machine are usually good enough.
apt_install() {
  local missing=() p
  for p in "$@"; do
    if apt_installed "$p"; then say "$p ok"; else missing+=("$p"); fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  have apt-get || die "apt-get not found: install ${missing[*]} with your OS package manager"
  say "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  if ! as_root apt-get install -y "${missing[@]}"; then
    say "apt-get install failed; refreshing package lists (apt-get update) and retrying"
    as_root apt-get update
    as_root apt-get install -y "${missing[@]}"
  fi
}
