# PeerLab's NAT router: `python -m peerlab.router` (router/, docs/router.md).
#
# FROM the Python image (PYTHON_IMAGE, peerlab/python:dev), which already holds the
# code in /app/peerlab/router. Adds the netfilter tools the router drives (iptables, iproute2,
# conntrack) and NetfilterQueue 1.1.0 for the userspace shaper (router/nfqueue.py).
#
# NetfilterQueue has no wheel on PyPI: a builder stage compiles one against Debian's
# libnetfilter-queue-dev, and the final stage installs only that wheel and the runtime
# library. The builder starts from the Debian base (BASE_IMAGE), not from the Python
# image, so that its layers stay cached when the code in the Python image changes; its
# Debian python3 is 3.11 like the Python image's (Debian's offline, python.org's online),
# and a cp311 wheel serves both.
#
# Cython is needed: the sdist's pre-generated netfilterqueue/_impl.c does not compile
# against Python 3.11 (`_PyErr_StackItem` has no member `exc_type`), and in an isolated
# build its setup.py fetches whatever Cython is newest. So the build is not isolated and
# uses a pinned Cython (3.3.1 was seen to work).
#
# Build context: a folder holding ca-certificates/ with the *.crt files of
# docker/ca-certificates/ alone (scripts/build-images.sh): pip reaches PyPI through the
# same HTTPS proxies as the Python image's build, see ca-certificates/README.md.
ARG BASE_IMAGE=debian:bookworm-slim
ARG PYTHON_IMAGE=peerlab/python:dev

FROM ${BASE_IMAGE} AS netfilterqueue-wheel
ARG NETFILTERQUEUE_VERSION=1.1.0
ARG CYTHON_VERSION=3.3.1
ARG WHEEL_VERSION=0.45.1
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120 \
    PIP_PROGRESS_BAR=off
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates build-essential \
        python3-dev python3-venv libnetfilter-queue-dev; \
    rm -rf /var/lib/apt/lists/*
COPY ca-certificates/ /usr/local/share/ca-certificates/peerlab/
RUN update-ca-certificates
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip install "cython==${CYTHON_VERSION}" "wheel==${WHEEL_VERSION}" \
    && /opt/build/bin/pip wheel --no-deps --no-build-isolation --no-binary NetfilterQueue \
        -w /wheels "NetfilterQueue==${NETFILTERQUEUE_VERSION}"

FROM ${PYTHON_IMAGE}
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends iptables iproute2 conntrack libnetfilter-queue1; \
    rm -rf /var/lib/apt/lists/*
COPY --from=netfilterqueue-wheel /wheels/ /tmp/wheels/
RUN pip install --no-index --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && python -c "import netfilterqueue"

EXPOSE 8080/tcp
CMD ["python", "-m", "peerlab.router"]
