"""Inputs of the control API campaign: one HTTP request to an agent's control server.

Pure: `make_case` draws everything from the case's generator. A request is a route of
docs/control-api.md with, mostly, its own method; a mutated JSON body (or garbage, an
empty body, one around the 1 MiB limit); a mutated, percent-encoded query string; now and
then a mutated path and an odd Content-Type. `POST /shutdown` is never sent: it stops the
agent under test, as documented. Paths with their query stay under aiohttp's 8,190-byte
limit: aiohttp answers a longer one itself (a JSON 400, tests/test_control_errors.py) and
logs it at ERROR with a traceback, which this campaign would report.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fuzz.jsontext import Style, render
from fuzz.mutate import (
    STRINGS,
    TreeMutation,
    Words,
    garbage_bytes,
    garbage_text,
    interesting,
    mutate_bytes,
    random_json,
)
from peerlab.peer.control import MAX_REQUEST_BYTES
from peerlab.peer.protocol import MAX_BODY_BYTES, MAX_FRAME_BYTES

AGENT = "fuzz-agent"

ROUTES = {
    "/healthz": "GET",
    "/state": "GET",
    "/connect": "POST",
    "/link-options": "POST",
    "/send": "POST",
    "/events": "GET",
    "/events.jsonl": "GET",
    "/events/stream": "GET",
    "/wait": "POST",
    "/wait-state": "POST",
    "/history": "GET",
    "/disconnect": "POST",
    "/shutdown": "POST",
}
"""Every route of docs/control-api.md and its method."""
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD")
MAX_TARGET = 8_000
"""Longest path and query sent: aiohttp answers (and logs) a longer one itself."""

# Short timeouts: a wait that is valid ends (408, 504) at once.
BODIES: dict[str, tuple[dict[str, Any], ...]] = {
    "/connect": ({"peer": "bob", "relay_only": False, "turn": True, "timeout": 0.01},),
    "/link-options": ({"peer": "bob", "relay_only": False, "turn": False},),
    "/send": (
        {"peer": "bob", "type": "text", "conversation": "c", "body": "hi"},
        {"peer": "bob", "type": "edit", "conversation": "c", "target": "m1", "body": "hey"},
        {"peer": "bob", "type": "delete", "conversation": "c", "target": "m1"},
        {
            "peer": "bob",
            "type": "reaction",
            "conversation": "c",
            "target": "m1",
            "emoji": "👍",
            "action": "add",
        },
        {"peer": "bob", "type": "typing", "conversation": "c", "state": "started"},
    ),
    "/wait": (
        {
            "kind": "delivered",
            "match": {"peer": "bob", "message.id": "m1"},
            "count": 1,
            "since": 0,
            "timeout": 0.01,
        },
    ),
    "/wait-state": ({"peer": "bob", "state": "connected", "timeout": 0.01},),
    "/disconnect": ({"peer": "bob"},),
}
QUERIES: dict[str, tuple[tuple[tuple[str, str], ...], ...]] = {
    "/events": ((("since", "0"), ("kind", "sent"), ("peer", "bob")), (("since", "3"),)),
    "/events.jsonl": ((("since", "0"), ("kind", "delivered"), ("message.type", "text")),),
    "/events/stream": ((("since", "0"), ("kind", "acked")),),
    "/history": ((("peer", "bob"), ("conversation", "c")),),
}

WORDS = Words(
    keys=(
        "peer",
        "type",
        "conversation",
        "body",
        "target",
        "emoji",
        "action",
        "state",
        "kind",
        "match",
        "count",
        "since",
        "timeout",
        "relay_only",
        "turn",
        "message.id",
    ),
    strings=(
        "bob",
        AGENT,
        "c",
        "text",
        "edit",
        "delete",
        "reaction",
        "typing",
        "ack",
        "heartbeat",
        "add",
        "remove",
        "started",
        "stopped",
        "connected",
        "closed",
        "delivered",
        "sent",
        "m1",
        "a:b",
    ),
    frame_sizes=(MAX_REQUEST_BYTES, MAX_FRAME_BYTES, MAX_BODY_BYTES),
    string_sizes=(0, 64, MAX_BODY_BYTES, MAX_FRAME_BYTES // 6, MAX_FRAME_BYTES),
)
QUERY_VALUES = ("", "0", "-1", "1.5", "x", "٣", "²", "9" * 5_000, str(2**64), "%", "bob\n")
ODD_CONTENT_TYPES = (
    None,
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json; charset=utf-16",
)


@dataclass(frozen=True)
class ControlCase:
    method: str
    target: str
    """Path and query, percent-encoded as sent."""
    body: bytes | None
    content_type: str | None

    def literal(self) -> str:
        return (
            f"ControlCase(method={self.method!r}, target={self.target!r}, body={self.body!r}, "
            f"content_type={self.content_type!r})"
        )


def make_case(rng: random.Random) -> ControlCase:
    route = rng.choice(list(ROUTES))
    method = ROUTES[route] if rng.random() < 0.85 else rng.choice(METHODS)
    if route == "/shutdown" and method == "POST":
        method = rng.choice([m for m in METHODS if m != "POST"])
    path = _path(rng, route) if rng.random() < 0.1 and route != "/shutdown" else route
    query = _query(rng, route)
    target = (path + (f"?{query}" if query else ""))[:MAX_TARGET]
    body = _body(rng, route) if method != "GET" or rng.random() < 0.1 else None
    content_type = "application/json" if rng.random() < 0.8 else rng.choice(ODD_CONTENT_TYPES)
    return ControlCase(method, target, body, content_type if body is not None else None)


def _path(rng: random.Random, route: str) -> str:
    return rng.choice(
        (
            route + "/",
            route.upper(),
            "/" + route,
            route + "%00",
            route + "/x",
            "/%" + f"{ord(route[1]):02x}" + route[2:],  # the same path, one letter escaped
            route + "%2F",
            "/nope",
            "/../" + route[1:],
            "/" + "a" * 4_000,
        )
    )


def _query(rng: random.Random, route: str) -> str:
    if route not in QUERIES or rng.random() < 0.05:
        pairs = [] if rng.random() < 0.8 else [("since", rng.choice(QUERY_VALUES))]
    else:
        pairs = list(rng.choice(QUERIES[route]))
    for _ in range(rng.randrange(3)):
        op = rng.randrange(4)
        if op == 0 and pairs:
            i = rng.randrange(len(pairs))
            pairs[i] = (pairs[i][0], rng.choice(QUERY_VALUES + STRINGS))
        elif op == 1 and pairs:
            del pairs[rng.randrange(len(pairs))]
        elif op == 2:
            pairs.append((rng.choice((*WORDS.keys, "", "since")), rng.choice(QUERY_VALUES)))
        elif pairs:
            pairs.append(rng.choice(pairs))  # a repeated name
    query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in pairs)
    if rng.random() < 0.1:
        blind = mutate_bytes(rng, query.encode(), (b"%zz", b"%ff", b"%00", b"+&=;#"))
        query = quote(blind, safe="%&=+;")  # still a valid request line
    return query


def _quote(text: str) -> str:
    # Lone surrogates travel as the bytes of their would-be UTF-8 form: %ED%A0%80.
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def _body(rng: random.Random, route: str) -> bytes:
    seeds = BODIES.get(route, ({},))
    style = Style(ensure_ascii=rng.random() < 0.3, spaced=rng.random() < 0.2)
    kind = rng.random()
    if kind < 0.05:
        text = render(rng.choice(seeds), style)
    elif kind < 0.8:
        mutation = TreeMutation(rng, WORDS)
        text = render(mutation(rng.choice(seeds)), style, mutation.fill)
    elif kind < 0.88:
        text = render(random_json(rng, WORDS), style)
    elif kind < 0.92:
        text = render({**rng.choice(seeds), "timeout": interesting(rng, WORDS)}, style)
    elif kind < 0.96:
        return rng.choice((b"", garbage_bytes(rng), garbage_text(rng).encode()))
    else:
        return mutate_bytes(rng, render(rng.choice(seeds), style).encode())
    return text.encode("utf-8", "surrogatepass")  # a raw lone surrogate: not UTF-8
