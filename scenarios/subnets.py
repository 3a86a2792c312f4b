"""Choosing a run's address prefix: a 10.X.0.0/16 block that no Docker network and no
host route uses, so that runs side by side (and the user's own networks) never collide.

`pick_prefix` is pure; `used_networks` asks Docker and the kernel what is taken;
`claim_prefix` holds a choice, across processes, until its lab is gone.
"""

from __future__ import annotations

import ipaddress
import os
import random
from collections.abc import Iterable
from pathlib import Path

import docker

from peerlab.scenarios.host_locks import lock_dir, try_lock

CANDIDATES = range(100, 200)
"""Second octets tried: 10.100.0.0/16 … 10.199.0.0/16."""


class NoFreeSubnet(RuntimeError):
    pass


def pick_prefix(used: Iterable[ipaddress.IPv4Network], rng: random.Random) -> str:
    """A free "10.X" prefix, chosen at random among the free ones."""
    taken = list(used)
    free = [
        x
        for x in CANDIDATES
        if not any(ipaddress.ip_network(f"10.{x}.0.0/16").overlaps(n) for n in taken)
    ]
    if not free:
        raise NoFreeSubnet(
            f"every 10.X.0.0/16 for X in {CANDIDATES.start}..{CANDIDATES.stop - 1} overlaps a "
            "Docker network or a host route; remove unused networks (`docker network prune`)"
        )
    return f"10.{rng.choice(free)}"


_held: dict[str, int] = {}
"""Prefix -> the descriptor holding its lock, for the prefixes this process handed out."""


def claim_prefix(client: docker.DockerClient, rng: random.Random) -> str:
    """A free prefix, held until `release_prefix` by a lock every PeerLab process of the
    user respects (scenarios/host_locks.py): labs started side by side, in this process
    (`peerlab run --jobs`) or in others (`make test`), choose before any of them has
    created its networks, and a lab may wait minutes for a stack slot in between."""
    folder = lock_dir("prefixes")
    used = used_networks(client)
    while True:
        prefix = pick_prefix(used, rng)
        fd = try_lock(folder / prefix)
        if fd is not None:
            _held[prefix] = fd
            return prefix
        used.append(ipaddress.ip_network(f"{prefix}.0.0/16"))  # another lab's: try another


def release_prefix(prefix: str) -> None:
    fd = _held.pop(prefix, None)
    if fd is not None:
        os.close(fd)


def used_networks(client: docker.DockerClient) -> list[ipaddress.IPv4Network]:
    """Subnets of every Docker network and every IPv4 route of this host."""
    found = []
    for network in client.networks.list():
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            subnet = config.get("Subnet", "")
            if ":" not in subnet and subnet:
                found.append(ipaddress.ip_network(subnet, strict=False))
    found.extend(_host_routes())
    return found


def _host_routes(path: Path = Path("/proc/net/route")) -> list[ipaddress.IPv4Network]:
    if not path.exists():  # not Linux (Docker Desktop): Docker's networks are what counts
        return []
    routes = []
    for line in path.read_text().splitlines()[1:]:
        fields = line.split()
        destination, mask = (int(fields[1], 16), int(fields[7], 16))
        if mask == 0:  # the default route overlaps everything and says nothing
            continue
        address = ipaddress.IPv4Address(destination.to_bytes(4, "little"))
        netmask = ipaddress.IPv4Address(mask.to_bytes(4, "little"))
        routes.append(ipaddress.ip_network(f"{address}/{netmask}", strict=False))
    return routes
