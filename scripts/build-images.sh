#!/usr/bin/env bash
# Build PeerLab's container images, with or without a container registry.
#
# Usage: scripts/build-images.sh [--online|--offline]
#
# Images:
#   peerlab/base:bookworm    Debian bookworm base (offline: debootstrap + docker import;
#                            online: debian:bookworm-slim retagged)
#   peerlab/python:dev       peer agent and signaling server (docker/python.Dockerfile)
#   peerlab/router:dev       NAT router of the network lab, FROM peerlab/python:dev
#                            (docker/router.Dockerfile)
#   peerlab/coturn:dev       coturn STUN/TURN server         (docker/coturn.Dockerfile)
#   peerlab/toxiproxy:dev    Toxiproxy (online: official image retagged; offline:
#                            built with the host's Go, docker/toxiproxy.Dockerfile)
#
# Mode: --online / --offline, else OFFLINE=1 forces offline, else offline is
# chosen when no registry answers (scripts/registry-available.sh).
#
# Environment:
#   OFFLINE=1                force offline mode
#   REQUIREMENTS_LOCK        pinned runtime dependencies (default: requirements.lock
#                            at the repository root); sent as requirements.lock
#   HOST_CA_DIR              host CA certificates copied into docker/ca-certificates/
#                            as host-*.crt (default /usr/local/share/ca-certificates;
#                            COPY_HOST_CAS=0 disables the copy)
#   DEBIAN_MIRROR            mirror for debootstrap and the offline base's apt sources
#                            (default: read from /etc/apt/sources.list*, else
#                            http://deb.debian.org/debian)
#   DEBIAN_SECURITY_MIRROR   same for bookworm-security
#   PYTHON_BASE_IMAGE        online base of peerlab/python (python:3.11-slim-bookworm)
#   DEBIAN_BASE_IMAGE        online base of the other images (debian:bookworm-slim)
#   TOXIPROXY_VERSION        2.12.0
#   REBUILD_BASE=1           rebuild peerlab/base:bookworm even if it exists
#   DOCKER_BUILD_ARGS        extra arguments for every `docker build` (e.g. --no-cache)
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

BASE_TAG=peerlab/base:bookworm
PYTHON_TAG=peerlab/python:dev
ROUTER_TAG=peerlab/router:dev
COTURN_TAG=peerlab/coturn:dev
TOXIPROXY_TAG=peerlab/toxiproxy:dev
PYTHON_BASE_IMAGE=${PYTHON_BASE_IMAGE:-python:3.11-slim-bookworm}
DEBIAN_BASE_IMAGE=${DEBIAN_BASE_IMAGE:-debian:bookworm-slim}
TOXIPROXY_VERSION=${TOXIPROXY_VERSION:-2.12.0}
TOXIPROXY_IMAGE=ghcr.io/shopify/toxiproxy:$TOXIPROXY_VERSION
REQUIREMENTS_LOCK=${REQUIREMENTS_LOCK:-requirements.lock}
HOST_CA_DIR=${HOST_CA_DIR:-/usr/local/share/ca-certificates}
CA_DIR=docker/ca-certificates
BUILD_DIR=$REPO_ROOT/build
read -r -a EXTRA_BUILD_ARGS <<<"${DOCKER_BUILD_ARGS:-}"

T_START=$SECONDS
log() { printf '[build-images +%3ds] %s\n' "$((SECONDS - T_START))" "$*" >&2; }
die() { printf '[build-images] ERROR: %s\n' "$*" >&2; exit 1; }
# step NAME CMD...: run CMD (errexit applies inside it), report its duration.
CURRENT_STEP=""
step() {
    local name=$1 t0=$SECONDS
    shift
    log "$name..."
    CURRENT_STEP=$name
    "$@"
    CURRENT_STEP=""
    log "$name: done in $((SECONDS - t0)) s"
}
on_error() { printf '[build-images] ERROR: %s failed (exit %s, line %s: %s)\n' "${CURRENT_STEP:-build}" "$1" "$2" "$3" >&2; }
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR
set -E
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root to run: $*"
    fi
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

mode=""
for arg in "$@"; do
    case $arg in
        --offline) mode=offline ;;
        --online) mode=online ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument: $arg (see --help)" ;;
    esac
done

# --- Debian mirror -----------------------------------------------------------

# Print the first URI of the host's apt sources that serves SUITE (deb822 and
# one-line formats), or nothing.
apt_source_uri() {
    local suite=$1 f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        awk -v suite="$suite" '
            function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uri != "") { print uri; found = 1; exit } }
            /^[[:space:]]*$/ { flush(); types = ""; uris = ""; suites = ""; uri = ""; next }
            /^Types:/  { sub(/^Types:[[:space:]]*/, ""); types = $0 }
            /^URIs:/   { sub(/^URIs:[[:space:]]*/, ""); split($0, u, /[[:space:]]+/); uri = u[1] }
            /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
            END { if (!found) flush() }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        # deb [options] URI SUITE COMPONENTS...
        sed -E 's/\[[^]]*\]//' "$f" | awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }'
    done
}

detect_mirrors() {
    DEBIAN_MIRROR=${DEBIAN_MIRROR:-$(apt_source_uri bookworm | head -n 1)}
    DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
    DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(apt_source_uri bookworm-security | head -n 1)}
    DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
    if [[ $DEBIAN_MIRROR == https:* ]]; then
        log "warning: $DEBIAN_MIRROR is HTTPS; the minimal base image has no CA certificates, so apt inside it may fail (set DEBIAN_MIRROR to an http:// mirror)"
    fi
}

# --- offline base image ----------------------------------------------------

run_debootstrap() {
    local log_file=$BUILD_DIR/debootstrap.log
    if ! as_root debootstrap --variant=minbase bookworm "$1" "$DEBIAN_MIRROR" >"$log_file" 2>&1; then
        tail -n 20 "$log_file" >&2
        die "debootstrap failed (full log: $log_file)"
    fi
}

build_base_offline() {
    if image_exists "$BASE_TAG" && [[ ${REBUILD_BASE:-0} != 1 ]]; then
        log "$BASE_TAG exists: skipping debootstrap (REBUILD_BASE=1 forces it)"
        return
    fi
    if ! command -v debootstrap >/dev/null; then
        step "installing debootstrap (apt)" \
            as_root env DEBIAN_FRONTEND=noninteractive sh -c \
            'apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends debootstrap >/dev/null'
    fi
    detect_mirrors
    local rootfs
    rootfs=$(mktemp -d /tmp/peerlab-rootfs.XXXXXX)
    # shellcheck disable=SC2064  # expand $rootfs now
    trap "as_root rm -rf '$rootfs'" EXIT
    step "debootstrap --variant=minbase bookworm from $DEBIAN_MIRROR (~45 s, log: build/debootstrap.log)" \
        run_debootstrap "$rootfs"
    # Everything below deletes under $rootfs: make sure it is the new root.
    [[ $rootfs == /tmp/peerlab-rootfs.* && -d $rootfs/etc/apt ]] || die "unexpected rootfs '$rootfs'"
    as_root tee "$rootfs/etc/apt/sources.list" >/dev/null <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb $DEBIAN_SECURITY_MIRROR bookworm-security main
EOF
    # Keep images small, as the official Debian images do.
    as_root tee "$rootfs/etc/apt/apt.conf.d/docker-clean" >/dev/null <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
    # Leave out documentation and translations, now and in every later apt
    # install (the same dpkg filter as Debian's official slim images).
    as_root tee "$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" >/dev/null <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
    as_root find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    as_root find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    local d
    for d in man groff info lintian linda locale; do
        [[ -d $rootfs/usr/share/$d ]] && as_root find "$rootfs/usr/share/$d" -mindepth 1 -delete
    done
    as_root sh -c "rm -rf '$rootfs'/var/cache/apt/archives/*.deb '$rootfs'/var/lib/apt/lists/* '$rootfs'/var/log/*.log '$rootfs'/tmp/*"
    step "docker import -> $BASE_TAG" sh -c "
        tar -C '$rootfs' --numeric-owner -c . | docker import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'CMD [\"bash\"]' \
            --message 'debootstrap --variant=minbase bookworm $DEBIAN_MIRROR' \
            - '$BASE_TAG' >/dev/null"
    as_root rm -rf "$rootfs"
    trap - EXIT
}

# --- CA certificates -------------------------------------------------------

# Copy the host's extra CA certificates into docker/ca-certificates/ as
# host-*.crt (gitignored there), so that pip inside the build trusts the same
# HTTPS proxies as the host. Unchanged files are left alone (layer cache).
sync_host_cas() {
    if [[ ${COPY_HOST_CAS:-1} == 0 ]]; then
        log "COPY_HOST_CAS=0: not copying host CA certificates"
        return
    fi
    local wanted=() f rel dest
    if [[ -d $HOST_CA_DIR ]]; then
        while IFS= read -r -d '' f; do
            rel=${f#"$HOST_CA_DIR"/}
            dest=$CA_DIR/host-${rel//\//-}
            wanted+=("$dest")
            cmp -s "$f" "$dest" || cp "$f" "$dest"
        done < <(find "$HOST_CA_DIR" -name '*.crt' -type f -print0 | sort -z)
    fi
    for f in "$CA_DIR"/host-*.crt; do
        [[ -e $f ]] || continue
        [[ " ${wanted[*]:-} " == *" $f "* ]] || rm -f "$f"
    done
    log "CA certificates in $CA_DIR: $(cd "$CA_DIR" && ls -- *.crt 2>/dev/null | tr '\n' ' ' || true)"
}

# --- images ------------------------------------------------------------------

# Proxy settings of the host, if any, reach the build (Docker's predefined ARGs).
proxy_build_args() {
    local v
    for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        [[ -n ${!v:-} ]] && printf -- '--build-arg\n%s\n' "$v"
    done
    return 0
}

# The CA certificates alone into $1, for a build context: a checkout's folder also holds
# a .gitignore that an installed copy lacks, and any difference in a COPY misses the layer
# cache from there on (an installed PeerLab rebuilt the python image, pip install and
# all, and the router's NetfilterQueue wheel, after `make images` had built them).
copy_cas() {
    mkdir -p "$1"
    find "$CA_DIR" -maxdepth 1 -name '*.crt' -type f -exec cp {} "$1/" \;
}

docker_build() {
    local args=()
    mapfile -t args < <(proxy_build_args)
    docker build "${args[@]}" "${EXTRA_BUILD_ARGS[@]}" "$@"
}

build_python() {
    local base=$1
    [[ -f $REQUIREMENTS_LOCK ]] || die "$REQUIREMENTS_LOCK not found: the python image installs its dependencies from it (set REQUIREMENTS_LOCK=path to use another file)"
    # The build context holds exactly what the Dockerfile copies: no
    # .dockerignore needed, and .venv/, build/, tests/ never travel.
    local ctx
    ctx=$(mktemp -d /tmp/peerlab-ctx.XXXXXX)
    mkdir -p "$ctx/docker"
    cp "$REQUIREMENTS_LOCK" "$ctx/requirements.lock"
    copy_cas "$ctx/docker/ca-certificates"
    local d
    for d in peer signaling scenarios router; do
        [[ -d $d ]] && tar -c --exclude=__pycache__ --exclude='*.pyc' "$d" | tar -x -C "$ctx"
    done
    docker_build -f docker/python.Dockerfile --build-arg "BASE_IMAGE=$base" -t "$PYTHON_TAG" "$ctx" \
        || { rm -rf "$ctx"; return 1; }
    rm -rf "$ctx"
}

# The router image builds on the Python image just built (its code is already in /app);
# its NetfilterQueue wheel is compiled in a stage FROM the Debian base ($1), which stays
# cached when only the code changes.
build_router() {
    local ctx
    ctx=$(mktemp -d /tmp/peerlab-ctx.XXXXXX)
    copy_cas "$ctx/ca-certificates"
    docker_build -f docker/router.Dockerfile --build-arg "BASE_IMAGE=$1" \
        --build-arg "PYTHON_IMAGE=$PYTHON_TAG" -t "$ROUTER_TAG" "$ctx" \
        || { rm -rf "$ctx"; return 1; }
    rm -rf "$ctx"
}

build_coturn() {
    docker_build -f docker/coturn.Dockerfile --build-arg "BASE_IMAGE=$1" -t "$COTURN_TAG" docker
}

# Build toxiproxy-server and toxiproxy-cli with the host's Go into build/toxiproxy/.
build_toxiproxy_binaries() {
    local out=$BUILD_DIR/toxiproxy
    if [[ -x $out/toxiproxy-server && -x $out/toxiproxy-cli ]] \
        && [[ $("$out/toxiproxy-server" -version 2>/dev/null) == *" $TOXIPROXY_VERSION" ]]; then
        log "toxiproxy $TOXIPROXY_VERSION binaries exist in $out: skipping the Go build"
        return
    fi
    command -v go >/dev/null || die "offline toxiproxy needs Go >= 1.23 on the host (not found)"
    local gobin
    gobin=$(mktemp -d /tmp/peerlab-gobin.XXXXXX)
    mkdir -p "$out"
    # GOFLAGS/GOWORK from the caller's project must not leak into `go install pkg@version`.
    (
        export GOBIN=$gobin CGO_ENABLED=0 GOOS=linux GOFLAGS= GOWORK=off
        go install -trimpath \
            -ldflags "-s -w -X github.com/Shopify/toxiproxy/v2.Version=$TOXIPROXY_VERSION" \
            "github.com/Shopify/toxiproxy/v2/cmd/server@v$TOXIPROXY_VERSION" \
            "github.com/Shopify/toxiproxy/v2/cmd/cli@v$TOXIPROXY_VERSION"
    ) || { rm -rf "$gobin"; return 1; }
    install -m 0755 "$gobin/server" "$out/toxiproxy-server"
    install -m 0755 "$gobin/cli" "$out/toxiproxy-cli"
    rm -rf "$gobin"
}

build_toxiproxy_offline() {
    step "go build toxiproxy $TOXIPROXY_VERSION (static) into build/toxiproxy" build_toxiproxy_binaries
    step "docker build $TOXIPROXY_TAG (from $1)" \
        docker_build -f docker/toxiproxy.Dockerfile --build-arg "BASE_IMAGE=$1" -t "$TOXIPROXY_TAG" "$BUILD_DIR/toxiproxy"
}

# --- main ----------------------------------------------------------------------

main() {
    step "ensure docker engine + compose" "$REPO_ROOT/scripts/ensure-docker.sh"
    # Without the buildx plugin a recent docker CLI can only use the classic
    # builder; say so explicitly (also silences DOCKER_BUILDKIT=1 errors).
    if ! docker buildx version >/dev/null 2>&1; then
        export DOCKER_BUILDKIT=0
    fi
    mkdir -p "$BUILD_DIR" "$CA_DIR"

    if [[ -z $mode ]]; then
        if [[ ${OFFLINE:-0} == 1 ]]; then
            mode=offline
        elif "$REPO_ROOT/scripts/registry-available.sh" "$DEBIAN_BASE_IMAGE"; then
            mode=online
        else
            mode=offline
        fi
    fi
    log "mode: $mode"

    local python_base debian_base
    if [[ $mode == offline ]]; then
        build_base_offline
        python_base=$BASE_TAG
        debian_base=$BASE_TAG
    else
        step "docker pull $DEBIAN_BASE_IMAGE" docker pull -q "$DEBIAN_BASE_IMAGE"
        docker tag "$DEBIAN_BASE_IMAGE" "$BASE_TAG"
        step "docker pull $PYTHON_BASE_IMAGE" docker pull -q "$PYTHON_BASE_IMAGE"
        python_base=$PYTHON_BASE_IMAGE
        debian_base=$DEBIAN_BASE_IMAGE
    fi

    sync_host_cas
    step "docker build $PYTHON_TAG (from $python_base)" build_python "$python_base"
    step "docker build $ROUTER_TAG (from $PYTHON_TAG)" build_router "$debian_base"
    step "docker build $COTURN_TAG (from $debian_base)" build_coturn "$debian_base"
    if [[ $mode == online ]] && docker pull -q "$TOXIPROXY_IMAGE" >/dev/null 2>&1; then
        docker tag "$TOXIPROXY_IMAGE" "$TOXIPROXY_TAG"
        log "$TOXIPROXY_TAG: tagged from $TOXIPROXY_IMAGE"
    else
        [[ $mode == online ]] && log "cannot pull $TOXIPROXY_IMAGE: building toxiproxy from source instead"
        build_toxiproxy_offline "$debian_base"
    fi

    log "all images built in $((SECONDS - T_START)) s:"
    docker image ls --filter 'reference=peerlab/*' --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | sed 's/^/    /' >&2
}

main
