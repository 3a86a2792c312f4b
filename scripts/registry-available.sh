#!/usr/bin/env bash
# Tell whether the Docker daemon can pull from a container registry.
#
# Usage: scripts/registry-available.sh [IMAGE]
#   Exit 0 when the daemon pulls IMAGE (default: hello-world:latest, ~13 kB),
#   1 when it cannot (no DNS, no route, refused, timed out, not found).
#   The pull goes through the daemon, so its registry mirrors and proxy
#   settings count, exactly as for the builds that follow.
#
# Environment:
#   REGISTRY_TIMEOUT   seconds before giving up (default 15). Without a
#                      registry the answer usually comes in well under a
#                      second (the name does not resolve).
set -euo pipefail

image=${1:-hello-world:latest}
timeout_s=${REGISTRY_TIMEOUT:-15}

log() { printf '[registry] %s\n' "$*" >&2; }

command -v docker >/dev/null || { log "ERROR: docker CLI not found"; exit 2; }

rc=0
out=$(timeout "$timeout_s" docker pull -q "$image" 2>&1) || rc=$?
if [[ $rc -eq 0 ]]; then
    log "available: pulled $image"
    exit 0
fi
if [[ $rc -eq 124 ]]; then
    log "unavailable: pulling $image timed out after ${timeout_s}s"
else
    log "unavailable: $(printf '%s' "$out" | tail -n 1)"
fi
exit 1
