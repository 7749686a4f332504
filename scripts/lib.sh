# Shared by scripts/run and scripts/test: the venv, and installs that run only when needed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

log() { printf '\033[1m[rana]\033[0m %s\n' "$*" >&2; }

# Install a requirements file into the venv unless that exact file is already installed.
ensure_venv() {
  local req="$1" stamp
  if [ ! -x "$PY" ]; then
    log "creating virtualenv in .venv (python3 $(python3 -c 'import sys; print(".".join(map(str, sys.version_info[:3])))'))"
    python3 -m venv "$VENV"
  fi
  stamp="$VENV/.installed-$(basename "$req")-$(cat "$ROOT/requirements.txt" "$ROOT/$req" | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    log "installing $req"
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$ROOT/$req" 2>&1 \
      | grep -v 'is ignored: it is neither a file nor a directory' || true
    "$PY" -c "import django" || { log "pip install failed"; exit 1; }
    rm -f "$VENV"/.installed-"$(basename "$req")"-*
    touch "$stamp"
  fi
}

# Debian packages, installed only when a command is missing.
ensure_debs() {  # ensure_debs CMD PACKAGE [CMD PACKAGE ...]
  local missing=()
  while [ $# -gt 0 ]; do
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
    shift 2
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    log "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"
    return 1
  fi
  log "apt-get install ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# scripts/run: the web server (scripts/serve) and a Celery worker with beat embedded, as one unit.
# Ctrl-C (SIGINT to the whole process group), or SIGTERM / SIGHUP to this shell, stops both
# gracefully (a second signal kills them); when either exits, the other is stopped; the shell
# returns once both have exited, so none is left behind. Should the shell itself be killed
# (SIGKILL), the kernel sends both a SIGTERM (setpriv --pdeathsig).
RUN_PIDS=()
RUN_STOPPING=0
stop_together() {
  local signal=TERM
  [ "$RUN_STOPPING" = 1 ] && signal=KILL
  RUN_STOPPING=1
  kill "-$signal" "${RUN_PIDS[@]}" 2>/dev/null || true
}
serve_with_worker() {
  local status=0 pid
  setpriv --pdeathsig TERM -- \
    "$VENV/bin/celery" -A rana_site worker --beat --loglevel INFO --without-mingle --without-gossip &
  RUN_PIDS=($!)
  setpriv --pdeathsig TERM -- "$ROOT/scripts/serve" &
  RUN_PIDS+=($!)
  trap stop_together INT TERM HUP
  wait -n "${RUN_PIDS[@]}" || status=$?
  [ "$RUN_STOPPING" = 1 ] || stop_together
  for pid in "${RUN_PIDS[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do wait "$pid" 2>/dev/null || true; done
  done
  trap - INT TERM HUP
  return "$status"
}
