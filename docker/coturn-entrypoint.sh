#!/bin/sh
# Entrypoint of peerlab/coturn:dev: run turnserver with the given arguments,
# adding the shared TURN secret from the environment (TURN_SECRET) when set.
# A first argument that is not an option runs that command instead
# (e.g. `docker run --rm peerlab/coturn:dev turnutils_stunclient HOST`).
set -eu
case "${1:-}" in
    ""|-*) ;;
    *) exec "$@" ;;
esac
if [ -n "${TURN_SECRET:-}" ]; then
    set -- "$@" "--static-auth-secret=${TURN_SECRET}"
else
    echo "coturn-entrypoint: TURN_SECRET is not set: TURN allocations will fail authentication (STUN still works)" >&2
fi
exec turnserver "$@"
