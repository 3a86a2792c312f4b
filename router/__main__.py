"""`python -m peerlab.router`: one NAT router of the network lab, configured by its environment
(ROUTER_*, docs/router.md). Sets up the NAT, starts the shaper and the control API, and
runs until SIGTERM/SIGINT, after which it removes its rules and exits within a second.

Exit status: 0 after a signal, 2 for a bad setting, 1 when a system tool failed.
"""

from __future__ import annotations

import signal
import sys

if __name__ == "__main__":
    # As PID 1 of its container the router ignores a SIGTERM it has no handler for, and
    # `docker stop` would then wait out its 10 s: exit at once until the event loop has
    # its own handler (importing aiohttp alone takes ~150 ms).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))

import asyncio
import logging
import os
import time

from peerlab.router.config import ConfigError, RouterConfig, from_env
from peerlab.router.control import ControlServer
from peerlab.router.nat import Links
from peerlab.router.netfilter import NatRouter, Netfilter, NetfilterError, find_links
from peerlab.router.nfqueue import ShaperService

# docker stop waits 10 s before SIGKILL; the router must be gone well before.
TEARDOWN_TIMEOUT = 0.8

log = logging.getLogger("router")


async def prepare_links(netfilter: Netfilter, config: RouterConfig) -> Links:
    """The router's interfaces, with the spare WAN address added to the WAN one (same
    prefix length) so that a rebind only has to change the SNAT rule."""
    addresses = await netfilter.addresses()
    links, wan_prefix = find_links(addresses, config)
    spare = config.wan_spare
    holder = next((a.interface for a in addresses if a.address == spare), None)
    if spare is not None and holder is None:
        await netfilter.add_address(links.wan_if, spare, wan_prefix)
    elif holder not in (None, links.wan_if):
        raise ConfigError(
            f"ROUTER_WAN_SPARE: {spare} is already on {holder}, not on the WAN interface "
            f"{links.wan_if}"
        )
    return links


async def run(config: RouterConfig, started: float) -> None:
    # First of all: as PID 1 of its container, the router ignores a SIGTERM it has no
    # handler for, and `docker stop` would wait out its timeout.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    netfilter = Netfilter()
    links = await prepare_links(netfilter, config)
    router = NatRouter(netfilter, config, links)
    shaper = ShaperService(links.lan_if, links.wan_if, config.seed, config.shaper)
    await asyncio.gather(router.start(), shaper.start())
    control = ControlServer(config, router, shaper, "0.0.0.0", config.control_port)
    await control.start()
    log.info(
        "%s: %s NAT, WAN %s on %s, LAN %s on %s (%s), shaper %s; control API on :%d; "
        "ready in %.0f ms",
        config.name, router.nat, router.wan, links.wan_if, config.lan_address, links.lan_if,
        links.lan_network, control.shaper_backend(), control.port,
        (time.monotonic() - started) * 1000,
    )  # fmt: skip
    await stop.wait()
    try:
        async with asyncio.timeout(TEARDOWN_TIMEOUT):
            await control.close()
            await shaper.close()
            await router.close()
    except TimeoutError:
        log.warning("teardown took longer than %.1f s: exiting anyway", TEARDOWN_TIMEOUT)
    except (NetfilterError, RuntimeError) as exc:
        log.warning("teardown: %s", exc)
    log.info("%s: stopped", config.name)


def main() -> int:
    started = time.monotonic()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    try:
        config = from_env(os.environ)
        asyncio.run(run(config, started))
    except ConfigError as exc:
        log.error("bad setting: %s", exc)
        return 2
    except (NetfilterError, RuntimeError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
