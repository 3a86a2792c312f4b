"""Keeping the Docker host's connection tracking out of the lab's NATs.

Docker loads `br_netfilter`, so every packet bridged between two of the lab's containers
also passes through the *host's* netfilter. The host's NAT core gives each new UDP flow
a binding, and when a flow collides with another it tracks — two routers punching holes
towards each other at the same moment — it rewrites the source port. An endpoint-
independent NAT then looks symmetric from outside, and full-cone or address-restricted
peers fail to connect where theory says they must (seen: `full-cone` ↔ `full-cone`
never connected; with `bridge-nf-call-iptables=0` on the host, always).

So the lab exempts its own bridges from the host's connection tracking: one raw-table
NOTRACK rule per bridge, tagged with the run's Compose project and removed at teardown.
The rules are written from a short-lived container on the host's network namespace
(`--network host`, NET_ADMIN), which works the same on Linux and on Docker Desktop's VM
and needs no iptables on the machine running PeerLab.
"""

from __future__ import annotations

import shlex

from scenarios.stack import Containers

IPTABLES_IMAGE = "peerlab/router:dev"
"""Any image with iptables; the router's is already built."""


def exempt_script(bridges: list[str], tag: str) -> str:
    """Shell commands inserting one NOTRACK rule per bridge. Pure."""
    return (
        "; ".join(
            f"iptables -t raw -I PREROUTING -i {shlex.quote(bridge)} "
            f"-m comment --comment {shlex.quote(tag)} -j NOTRACK"
            for bridge in bridges
        )
        + " || exit 1"
    )


def remove_script(tag: str) -> str:
    """Shell commands deleting every raw-table rule carrying `tag`. Pure."""
    # iptables-save quotes the comment ("peerlab:..."); eval undoes the quoting.
    return (
        f"iptables-save -t raw | grep -F -- {shlex.quote(tag)} | sed 's/^-A /-D /' | "
        "while read -r rule; do eval iptables -t raw $rule || exit 1; done"
    )


class HostConntrackExemption:
    def __init__(self, containers: Containers, image: str = IPTABLES_IMAGE):
        self.tag = f"peerlab:{containers.project}"
        self._containers = containers
        self._image = image
        self.installed = False

    async def install(self, networks: list[str]) -> list[str]:
        """Exempt the project's networks (Compose names, e.g. "lab"); their bridges."""
        bridges = [await self._containers.bridge(n) for n in networks]
        await self._run("notrack-add", exempt_script(bridges, self.tag))
        self.installed = True
        return bridges

    async def remove(self) -> None:
        if self.installed:
            await self._run("notrack-remove", remove_script(self.tag))
            self.installed = False

    async def _run(self, name: str, script: str) -> None:
        await self._containers.run_helper(
            name,
            self._image,
            ["sh", "-c", script],
            timeout=60,
            network_mode="host",
            cap_add=["NET_ADMIN"],
        )
