"""The router's control API: HTTP + JSON, for the lab harness. Documented in docs/router.md.

Every request body and response is a JSON object. Errors are `{"error": "..."}` naming the
field or setting at fault: 400 (bad request: nothing was changed), 404 (unknown route,
direction or partition), 409 (not possible in the current state, e.g. a rebind without a
spare address), 500 (a system tool failed; the text has its command line and stderr).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from peerlab.router.config import ConfigError, RouterConfig
from peerlab.router.netfilter import Conflict, NatRouter, UnknownPartition
from peerlab.router.nfqueue import DIRECTIONS, ShaperService

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 0.2


class BadRequest(ValueError):
    pass


class UnknownDirection(LookupError):
    pass


class ControlServer:
    def __init__(
        self,
        config: RouterConfig,
        router: NatRouter,
        shaper: ShaperService,
        host: str = "0.0.0.0",
        port: int = 0,
    ):
        self.config = config
        self.router = router
        self.shaper = shaper
        self.host = host
        self.port = port
        # The shaper is changed one request at a time.
        self._faults_lock = asyncio.Lock()
        app = web.Application(middlewares=[self._errors], client_max_size=1 << 20)
        app.add_routes(
            [
                web.get("/healthz", self.healthz),
                web.get("/state", self.state),
                web.put("/nat", self.set_nat),
                web.put("/faults/{direction}", self.set_faults),
                web.delete("/faults/{direction}", self.clear_faults),
                web.post("/partitions", self.add_partition),
                web.delete("/partitions/{id}", self.remove_partition),
                web.post("/rebind", self.rebind),
                web.get("/counters", self.counters),
            ]
        )
        # SIGTERM must end the router within a second: in-flight requests get this long.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        await self._runner.cleanup()

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except (BadRequest, ConfigError, ValueError) as exc:
            return _error(400, str(exc))
        except (UnknownDirection, UnknownPartition) as exc:
            return _error(404, str(exc))
        except Conflict as exc:
            return _error(409, str(exc))
        except web.HTTPException as exc:
            return _error(exc.status, f"{request.method} {request.path}: {exc.reason}")
        except Exception as exc:
            # The daemon keeps serving; the harness sees what failed.
            log.exception("%s %s failed", request.method, request.path)
            return _error(500, f"{request.method} {request.path}: {exc}")

    def shaper_backend(self) -> str:
        """The backend the shaper uses by default: the configured one, or for "auto" netem
        where the kernel has it, else nfqueue."""
        if self.config.shaper != "auto":
            return self.config.shaper
        return "netem" if self.shaper.kernel_has_netem() else "nfqueue"

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "router": self.config.name,
                "nat": self.router.nat,
                "hairpin": self.router.hairpin,
                "wan": self.router.wan,
                "lan": self.config.lan_address,
                "shaper": self.shaper_backend(),
                "kernel": {"netem": self.shaper.kernel_has_netem()},
            }
        )

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "router": self.config.name,
                "nat": self.router.nat,
                "hairpin": self.router.hairpin_state(),
                "wan": self.router.wan,
                "wan_primary": self.config.wan_address,
                "wan_spare": self.config.wan_spare,
                "lan": self.config.lan_address,
                "lan_hosts": list(self.config.lan_hosts),
                "interfaces": {"wan": self.router.links.wan_if, "lan": self.router.links.lan_if},
                "shaper": self.shaper_backend(),
                "faults": self.shaper.faults(),
                "partitions": self.router.partitions(),
                "counters": await self._counters(),
            }
        )

    async def set_nat(self, request: web.Request) -> web.Response:
        body = await _body(request)
        unknown = sorted(set(body) - {"type", "hairpin"})
        if unknown:
            raise BadRequest(f"unknown field(s) {', '.join(unknown)}: expected type, hairpin")
        if not body:
            raise BadRequest("missing field 'type' (and/or 'hairpin')")
        await self.router.set_nat(body.get("type"), body.get("hairpin"))
        return web.json_response(
            {"nat": self.router.nat, "hairpin": self.router.hairpin, "wan": self.router.wan}
        )

    async def set_faults(self, request: web.Request) -> web.Response:
        direction = _direction(request)
        faults = await _body(request)
        async with self._faults_lock:
            backend = await self.shaper.set_faults(direction, faults)
        return web.json_response(
            {"direction": direction, "faults": self.shaper.faults()[direction], "backend": backend}
        )

    async def clear_faults(self, request: web.Request) -> web.Response:
        direction = _direction(request)
        async with self._faults_lock:
            await self.shaper.clear_faults(direction)
        return web.json_response({"direction": direction, "faults": {}})

    async def add_partition(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if "address" not in body:
            raise BadRequest("missing field 'address'")
        unknown = sorted(set(body) - {"address", "direction"})
        if unknown:
            raise BadRequest(f"unknown field(s) {', '.join(unknown)}: expected address, direction")
        partition = await self.router.add_partition(body["address"], body.get("direction", "both"))
        return web.json_response(partition.to_json())

    async def remove_partition(self, request: web.Request) -> web.Response:
        partition = await self.router.remove_partition(request.match_info["id"])
        return web.json_response({**partition.to_json(), "removed": True})

    async def rebind(self, request: web.Request) -> web.Response:
        before, after = await self.router.rebind()
        return web.json_response({"wan_before": before, "wan_after": after})

    async def counters(self, request: web.Request) -> web.Response:
        return web.json_response(await self._counters())

    async def _counters(self) -> dict[str, Any]:
        return {**self.shaper.counters(), "partitions": await self.router.partition_counters()}


def _direction(request: web.Request) -> str:
    direction = request.match_info["direction"]
    if direction not in DIRECTIONS:
        raise UnknownDirection(
            f"direction: expected {' or '.join(DIRECTIONS)} in {request.path}, got {direction!r}"
        )
    return direction


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)
