# coturn (STUN/TURN server) from Debian bookworm: coturn 4.6.1.
#
# Build context: docker/. BASE_IMAGE is debian:bookworm-slim where a registry
# answers, the debootstrap-made peerlab/base:bookworm offline.
# Configuration comes from the compose command line or a mounted file; the
# example docker/turnserver.conf is installed as /etc/turnserver.conf and reads
# the shared TURN secret from the environment (TURN_SECRET), see the entrypoint.
# iproute2: the entrypoint adds STUN_ALT_ADDRESS, coturn's second address for
# RFC 5780 NAT behaviour discovery, when it is set.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8

RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends coturn iproute2; \
    rm -rf /var/lib/apt/lists/*

COPY turnserver.conf /etc/turnserver.conf
COPY coturn-entrypoint.sh /usr/local/bin/coturn-entrypoint

EXPOSE 3478/udp 3478/tcp
ENTRYPOINT ["coturn-entrypoint"]
CMD ["-c", "/etc/turnserver.conf"]
