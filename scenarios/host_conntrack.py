"""Keeping the Docker host's connection tracking out of the lab's NATs.

Docker loads `br_netfilter`, so every packet bridged between two of the lab's containers
also passes through the *host's* netfilter. The host's NAT core gives each new UDP flow
a binding, and when a flow collides with another it tracks — two routers punching holes
towards each other at the same moment — it rewrites the source port. An endpoint-
independent NAT then looks symmetric from outside, and full-cone or address-restricted
peers fail to connect where theory says they must (seen: `full-cone` ↔ `full-cone`
never connected; with `bridge-nf-call-iptables=0` on the host, always).

So the lab exempts its own bridges from the host's connection tracking: one raw-table
NOTRACK rule per bridge, tagged `peerlab:<Compose project>` and removed at teardown (or,
after a run that was killed, by `peerlab clean`, docs/cleanup.md). The rules are written
from a short-lived container on the host's network namespace (`--network host`,
NET_ADMIN), which works the same on Linux and on Docker Desktop's VM and needs no
iptables on the machine running PeerLab.
"""

from __future__ import annotations

import itertools
import os
import shlex

from docker import DockerClient

from peerlab.scenarios.stack import Containers, hold, release

IPTABLES_IMAGE = "peerlab/router:dev"
"""Any image with iptables; the router's is already built."""

TAG_PREFIX = "peerlab:"


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


def tag_pattern(tag: str | None = None) -> str:
    """Extended regex matching, in `iptables-save` output, the rules tagged `tag`, or
    (None) the rules of every run: the whole comment, so that the tag of one run never
    matches a longer one (`…-nat` inside `…-nat-matrix`). Pure."""
    comment = tag if tag is not None else f'{TAG_PREFIX}[^" ]+'
    # iptables-save may or may not quote the comment.
    return f'--comment "?{comment}"?( |$)'


def list_script(tag: str | None) -> str:
    """Shell commands printing the raw-table rules tagged `tag` (None: any run's). Pure."""
    # grep exits 1 when nothing matches: not a failure here.
    return f"iptables-save -t raw | {{ grep -E -- {shlex.quote(tag_pattern(tag))} || true; }}"


def remove_script(tag: str) -> str:
    """Shell commands deleting every raw-table rule tagged `tag`. Pure."""
    # iptables-save quotes the comment ("peerlab:..."); eval undoes the quoting.
    return (
        f"iptables-save -t raw | {{ grep -E -- {shlex.quote(tag_pattern(tag))} || true; }} | "
        "sed 's/^-A /-D /' | while read -r rule; do eval iptables -t raw $rule || exit 1; done"
    )


def rule_tag(line: str) -> str | None:
    """The run tag (`peerlab:<project>`) of one `iptables-save` rule line, if it has
    one. Pure."""
    words = shlex.split(line)
    for option, value in itertools.pairwise(words):
        if option == "--comment" and value.startswith(TAG_PREFIX):
            return value
    return None


def delete_script(lines: list[str]) -> str:
    """Shell commands deleting these `iptables-save` rule lines (`-A ...`), each printed
    once deleted; exits 1 at the first that cannot be. Pure."""
    commands = []
    for line in lines:
        rule = shlex.split(line)
        rule[0] = "-D"
        commands.append(f"iptables -t raw {shlex.join(rule)} && echo {shlex.quote(line)} || exit 1")
    return "; ".join(commands) or "true"


def run_on_host(client: DockerClient, script: str, image: str = IPTABLES_IMAGE) -> str:
    """Run `script` in a short-lived container on the host's network namespace, outside
    any run (for `peerlab clean` and the exit hook); what it printed. The Docker SDK's
    errors (ContainerError: it exited non-zero, ImageNotFound) propagate."""
    output = client.containers.run(
        image,
        ["sh", "-c", script],
        name=f"peerlab-host-rules-{os.getpid()}",
        network_mode="host",
        cap_add=["NET_ADMIN"],
        remove=True,
        stdout=True,
        stderr=False,
    )
    return output.decode(errors="replace")


class HostConntrackExemption:
    def __init__(self, containers: Containers, image: str = IPTABLES_IMAGE):
        self.tag = f"{TAG_PREFIX}{containers.project}"
        self._containers = containers
        self._image = image
        self.installed = False

    async def install(self, networks: list[str]) -> list[str]:
        """Exempt the project's networks (Compose names, e.g. "lab"); their bridges."""
        bridges = [await self._containers.bridge(n) for n in networks]
        # Held before the helper runs: an interruption while it runs may still leave rules.
        hold(self._containers.project, "host-rules")
        await self._run("notrack-add", exempt_script(bridges, self.tag))
        self.installed = True
        return bridges

    async def remove(self) -> None:
        if self.installed:
            await self._run("notrack-remove", remove_script(self.tag))
            self.installed = False
            release(self._containers.project, "host-rules")

    async def _run(self, name: str, script: str) -> None:
        await self._containers.run_helper(
            name,
            self._image,
            ["sh", "-c", script],
            timeout=60,
            network_mode="host",
            cap_add=["NET_ADMIN"],
        )
