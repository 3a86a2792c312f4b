"""`Toxiproxy`: an async client for Toxiproxy's HTTP API (proxies and toxics).

Why not `toxiproxy-python`, which the design names: it keeps the API address in
module-global state (so two stacks cannot be driven from one process) and sets no request
timeouts (a wedged Toxiproxy hangs the scenario instead of failing it). The API is a
handful of JSON routes, so this client speaks it directly with aiohttp, a timeout on
every request and errors that name the proxy and the toxic.
"""

from __future__ import annotations

from typing import Any

import aiohttp


class ToxiproxyError(RuntimeError):
    pass


class Toxiproxy:
    def __init__(self, base_url: str, session: aiohttp.ClientSession, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def version(self) -> str:
        return await self._call("GET", "/version", text=True)

    async def proxies(self) -> dict[str, Any]:
        """Every proxy with its toxics (what a results folder records)."""
        return await self._call("GET", "/proxies")

    async def set_enabled(self, proxy: str, enabled: bool) -> None:
        """Disable: close all connections and refuse new ones. Enable: accept again."""
        await self._call("POST", f"/proxies/{proxy}", {"enabled": enabled})

    async def add_toxic(
        self,
        proxy: str,
        name: str,
        type: str,
        attributes: dict[str, Any],
        *,
        stream: str = "downstream",
        toxicity: float = 1.0,
    ) -> None:
        """E.g. `add_toxic("signaling", "lag", "latency", {"latency": 200, "jitter": 50})`."""
        await self._call(
            "POST",
            f"/proxies/{proxy}/toxics",
            {
                "name": name,
                "type": type,
                "stream": stream,
                "toxicity": toxicity,
                "attributes": attributes,
            },
        )

    async def update_toxic(self, proxy: str, name: str, attributes: dict[str, Any]) -> None:
        await self._call("POST", f"/proxies/{proxy}/toxics/{name}", {"attributes": attributes})

    async def remove_toxic(self, proxy: str, name: str) -> None:
        await self._call("DELETE", f"/proxies/{proxy}/toxics/{name}", text=True)

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        await self._call("POST", "/reset", text=True)

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, text: bool = False
    ) -> Any:
        what = f"toxiproxy {method} {path}" + (f" {body}" if body else "")
        try:
            async with self._session.request(
                method, self.base_url + path, json=body, timeout=self._timeout
            ) as response:
                payload = await response.text()
                if response.status >= 300:
                    raise ToxiproxyError(f"{what} → {response.status}: {payload.strip()}")
                if text or not payload:
                    return payload
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ToxiproxyError(f"{what} failed: {exc!r}") from None
