#!/bin/sh
# Entrypoint of peerlab/coturn:dev: run turnserver with the given arguments,
# adding the shared TURN secret from the environment (TURN_SECRET) when set.
# A first argument that is not an option runs that command instead
# (e.g. `docker run --rm peerlab/coturn:dev turnutils_stunclient HOST`).
#
# RFC 5780 (NAT behaviour discovery) needs a second address: when STUN_ALT_ADDRESS
# is set, it is added to the interface that holds STUN_ADDRESS, with the same
# prefix length, before turnserver starts (needs cap_add NET_ADMIN). The command
# line then names both, e.g. --listening-ip=$STUN_ADDRESS --listening-ip=$STUN_ALT_ADDRESS:
# with two listening addresses coturn answers CHANGE-REQUEST (alternate port:
# listening port + 1).
set -eu
case "${1:-}" in
    ""|-*) ;;
    *) exec "$@" ;;
esac

fail() { echo "coturn-entrypoint: $*" >&2; exit 1; }

add_alt_address() {
    [ -n "${STUN_ADDRESS:-}" ] \
        || fail "STUN_ALT_ADDRESS=$STUN_ALT_ADDRESS is set but STUN_ADDRESS is not: expected the container's address on the lab network, to find the interface the second address goes on"
    # `ip -o -4 addr show` lines: "2: eth0    inet 10.77.0.11/24 brd ... scope global eth0"
    found=$(ip -o -4 addr show | awk -v want="$STUN_ADDRESS" \
        '{ split($4, a, "/"); if (a[1] == want) { print $2, a[2]; exit } }')
    [ -n "$found" ] \
        || fail "STUN_ADDRESS=$STUN_ADDRESS is on no interface of this container; it has: $(ip -o -4 addr show | awk '{printf "%s %s; ", $2, $4}')"
    dev=${found% *}
    prefix=${found#* }
    if ip -o -4 addr show dev "$dev" | awk '{ print $4 }' | grep -qx "$STUN_ALT_ADDRESS/$prefix"; then
        return 0
    fi
    ip addr add "$STUN_ALT_ADDRESS/$prefix" dev "$dev" \
        || fail "cannot add STUN_ALT_ADDRESS=$STUN_ALT_ADDRESS/$prefix to $dev (the container needs cap_add NET_ADMIN)"
    echo "coturn-entrypoint: added $STUN_ALT_ADDRESS/$prefix to $dev (second address for RFC 5780)" >&2
}

if [ -n "${STUN_ALT_ADDRESS:-}" ]; then
    add_alt_address
fi

if [ -n "${TURN_SECRET:-}" ]; then
    set -- "$@" "--static-auth-secret=${TURN_SECRET}"
else
    echo "coturn-entrypoint: TURN_SECRET is not set: TURN allocations will fail authentication (STUN still works)" >&2
fi
exec turnserver "$@"
