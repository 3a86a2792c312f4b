# Toxiproxy (TCP fault injection), built offline from a host-compiled binary.
#
# Only used when no registry answers: online, scripts/build-images.sh retags
# the official ghcr.io/shopify/toxiproxy image as peerlab/toxiproxy:dev
# instead. This image copies that one's layout (/toxiproxy, /toxiproxy-cli,
# same entrypoint and default command), so compose files work with either.
#
# Build context: build/toxiproxy/ holding the static binaries toxiproxy-server
# and toxiproxy-cli (CGO_ENABLED=0 go install ...@vX.Y.Z).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

COPY toxiproxy-server /toxiproxy
COPY toxiproxy-cli /toxiproxy-cli
RUN ln -s /toxiproxy /usr/local/bin/toxiproxy-server \
    && ln -s /toxiproxy-cli /usr/local/bin/toxiproxy-cli

ENV LOG_LEVEL=info
EXPOSE 8474
ENTRYPOINT ["/toxiproxy"]
CMD ["-host=0.0.0.0", "-port=8474"]
