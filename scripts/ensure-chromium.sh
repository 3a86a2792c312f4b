#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is installed, for the report's browser test
# (tests/test_report.py renders a real run's report.html and checks the drawn page).
#
# Idempotent: when /usr/bin/chromium exists it only prints the version. Otherwise it runs
# apt-get update and installs the `chromium` package without its recommends (fonts and
# drivers the headless renderer does not need), as root or through sudo.
#
# Environment:
#   CHROMIUM   the binary to check for (default /usr/bin/chromium, Debian's path)
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

log() { printf '[ensure-chromium] %s\n' "$*" >&2; }
die() { printf '[ensure-chromium] ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root to run: $*"
    fi
}

install_chromium() {
    command -v apt-get >/dev/null \
        || die "$CHROMIUM is missing and apt-get is not available: install Chromium by hand"
    log "$CHROMIUM not found: installing Debian's chromium (apt-get update + install)..."
    local t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    log "apt-get update..."
    as_root apt-get update -q >/dev/null || die "apt-get update failed"
    log "apt-get install -y --no-install-recommends chromium..."
    as_root apt-get install -y -q --no-install-recommends chromium >/dev/null \
        || die "apt-get install chromium failed"
    [[ -x $CHROMIUM ]] || die "chromium installed but $CHROMIUM is still missing"
    log "chromium installed in $((SECONDS - t0)) s"
}

[[ -x $CHROMIUM ]] || install_chromium
# Chromium prints its version without starting a browser; headless needs no display.
log "ok: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM (version unknown)")"
