"""Credentials: registration tokens for the signaling server and TURN REST credentials.

A registration token proves that a peer knows the shared PeerLab secret for a given
(room, peer) pair: ``hex(HMAC-SHA256(secret, f"{room}:{peer}"))``.

TURN credentials follow coturn's REST API (``use-auth-secret``): the username is
``f"{expiry}:{peer}"`` with ``expiry`` a Unix time, the credential is
``base64(HMAC-SHA1(turn_secret, username))``.

Everything here is pure: the current time is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

STUN_SCHEMES = ("stun:", "stuns:")
TURN_SCHEMES = ("turn:", "turns:")


def make_token(secret: str, room: str, peer: str) -> str:
    """Return the registration token of ``peer`` in ``room``: lowercase hex HMAC-SHA256."""
    message = f"{room}:{peer}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_token(secret: str, room: str, peer: str, token: str) -> bool:
    """Tell whether ``token`` is the registration token of ``peer`` in ``room``."""
    expected = make_token(secret, room, peer)
    # compare_digest on str requires ASCII; bytes accept any token the client sent.
    return hmac.compare_digest(expected.encode(), token.encode("utf-8", "surrogatepass"))


def turn_credentials(turn_secret: str, peer: str, ttl: int, now: float) -> tuple[str, str]:
    """Return coturn REST API ``(username, credential)`` for ``peer``, valid ``ttl`` seconds."""
    username = f"{int(now) + ttl}:{peer}"
    digest = hmac.new(turn_secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers_for(
    peer: str,
    urls: Iterable[str],
    turn_secret: str | None,
    ttl: int,
    now: float,
) -> list[dict[str, Any]]:
    """Build the ``ice_servers`` list sent to ``peer`` on registration.

    One entry per configured URL, in configuration order. TURN URLs carry
    short-lived REST credentials when ``turn_secret`` is set; STUN URLs never do.
    """
    servers: list[dict[str, Any]] = []
    credentials = turn_credentials(turn_secret, peer, ttl, now) if turn_secret else None
    for url in urls:
        entry: dict[str, Any] = {"urls": [url]}
        if credentials is not None and url.lower().startswith(TURN_SCHEMES):
            entry["username"], entry["credential"] = credentials
        servers.append(entry)
    return servers
