"""`RouterClient`: drives one NAT router of the lab through its control API
(docs/router.md): NAT type, per-direction link faults, partitions, rebinding, counters.

Every call has a timeout; every failure raises `RouterError` naming the router, the
request and the router's answer.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp


class RouterError(AssertionError):
    """A router control request failed."""


class RouterClient:
    def __init__(
        self, name: str, base_url: str, session: aiohttp.ClientSession, timeout: float = 10.0
    ):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._timeout = timeout

    async def health(self) -> dict[str, Any]:
        return await self._call("GET", "/healthz")

    async def state(self) -> dict[str, Any]:
        return await self._call("GET", "/state")

    async def counters(self) -> dict[str, Any]:
        return await self._call("GET", "/counters")

    async def set_nat(self, nat: str) -> dict[str, Any]:
        return await self._call("PUT", "/nat", {"type": nat})

    async def set_faults(self, direction: str, faults: dict[str, Any]) -> dict[str, Any]:
        """Replace the faults of one direction ("up": LAN→WAN, "down": WAN→LAN)."""
        return await self._call("PUT", f"/faults/{direction}", faults)

    async def clear_faults(self, direction: str) -> None:
        await self._call("DELETE", f"/faults/{direction}")

    async def add_partition(self, address: str, direction: str = "both") -> dict[str, Any]:
        return await self._call("POST", "/partitions", {"address": address, "direction": direction})

    async def remove_partition(self, partition_id: str) -> None:
        await self._call("DELETE", f"/partitions/{partition_id}")

    async def rebind(self) -> dict[str, Any]:
        return await self._call("POST", "/rebind", {})

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        what = f"router {self.name}: {method} {path}"
        try:
            async with self._session.request(
                method,
                self.base_url + path,
                json=body,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as response:
                text = await response.text()
                try:
                    payload = json.loads(text) if text else {}
                except ValueError:
                    raise RouterError(
                        f"{what} → {response.status}: not JSON: {text[:300]!r}"
                    ) from None
                if response.status >= 300:
                    detail = payload.get("error", payload) if isinstance(payload, dict) else text
                    raise RouterError(f"{what} → {response.status}: {detail}")
                return payload
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RouterError(f"{what} failed: {exc!r}") from None
