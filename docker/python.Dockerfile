# One image for both Python services of PeerLab:
#   the peer agent        docker run peerlab/python:dev python -m peerlab.peer
#   the signaling server  docker run peerlab/python:dev python -m peerlab.signaling
#
# Build context: the repository root (scripts/build-images.sh sends only the
# files listed below). BASE_IMAGE is the upstream Python image where a registry
# answers; offline it is the debootstrap-made peerlab/base:bookworm, which has
# no Python, so Debian's python3 (3.11 on bookworm) is installed instead. The
# same steps work for both: every tool is looked up, not assumed.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120 \
    PIP_PROGRESS_BAR=off

# System packages: network tools for the NAT scenarios, CA store, and Python
# itself when the base has none.
RUN set -eux; \
    pkgs="ca-certificates iproute2 iptables"; \
    if ! command -v python3 >/dev/null; then pkgs="$pkgs python3 python3-venv"; fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends $pkgs; \
    rm -rf /var/lib/apt/lists/*

# Extra CA certificates (corporate or intercepting HTTPS proxies): every *.crt
# in docker/ca-certificates/ joins the system store, which pip then uses.
COPY docker/ca-certificates/ /usr/local/share/ca-certificates/peerlab/
RUN update-ca-certificates
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

# Dependencies: a layer of their own, rebuilt only when requirements.lock changes.
# Lean on purpose: requirements.lock pins only what the agent and the signaling server
# need (aiortc, websockets, aiohttp and their closure; `make lock`). The package itself
# is not pip-installed here, which would also bring its host-side dependencies (the
# Docker SDK, PyYAML, jsonschema, pytest: the CLI and the pytest plugin, which never run
# in a container); its code is copied below instead. `--no-deps` installs exactly the
# pinned list, and `pip check` proves the list complete.
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-deps -r /tmp/requirements.lock \
    && pip check \
    && python -c "import aiortc, websockets, aiohttp"

# Application code last, so that a code change rebuilds in seconds. It is run
# from /app through PYTHONPATH: no build step, no network access. The folders go under
# /app/peerlab/, the namespace an installed PeerLab has (peerlab.peer, peerlab.signaling...).
WORKDIR /app
ENV PYTHONPATH=/app
COPY signaling/ /app/peerlab/signaling/
COPY peer/ /app/peerlab/peer/
# The network lab's NAT router (peerlab/router:dev adds its system tools on top).
COPY router/ /app/peerlab/router/
# The harness too: the deliberately broken agent (scenarios/broken_agent.py) runs from it.
COPY scenarios/ /app/peerlab/scenarios/
# Compiled once here: PYTHONDONTWRITEBYTECODE keeps every container from caching it, and
# each agent, router or probe start compiled the modules it imports again (~0.05 CPU-s).
RUN python -m compileall -q /app/peerlab

CMD ["python", "-m", "peerlab.peer"]
