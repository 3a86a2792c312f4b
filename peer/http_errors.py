"""The control API's error answers, `{"error": "..."}`, also for the errors aiohttp answers.

Some requests never reach the application, so no middleware can answer them: one that is
not valid HTTP (a request target or header value over 8190 bytes, too many headers, a
malformed line) is answered by aiohttp's `RequestHandler.handle_error`, and an `Expect`
header other than `100-continue` by the route's expect handler, whose 417 is raised
before the middlewares run (on an unknown route too). Both answers are plain text, and
aiohttp has neither a setting nor a signal to change them (aio-libs/aiohttp#3287).

Every answer, the application's and aiohttp's own, is written by
`RequestHandler.finish_response`, so a subclass that rewrites a plain-text error there
catches them all, whichever part of aiohttp built them, and leaves aiohttp's parsing,
limits, logging and connection handling as they are. Overriding `handle_error` would miss
the 417, and an `expect_handler` on every route would miss every 400 and the 417 of an
unknown route. aiohttp builds one handler per connection from its `web.Server`, which the
`AppRunner` builds itself: `JsonErrorRunner` puts the subclasses in at those two points.
"""

from __future__ import annotations

from aiohttp import hdrs, web


def error_response(
    status: int, error: str, headers: dict[str, str] | None = None, *, code: str | None = None
) -> web.Response:
    """An error of the control API: `{"error": ..., "code"?: ...}` with `status`."""
    body = {"error": error} if code is None else {"error": error, "code": code}
    return web.json_response(body, status=status, headers=headers)


class JsonErrorRunner(web.AppRunner):
    """An `AppRunner` whose connections answer in JSON the errors aiohttp answers itself."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # No parameter chooses the server's class: the instance becomes the subclass, which
        # adds no state, so it keeps whatever this version of aiohttp set on it.
        server.__class__ = _Server
        return server


class _Server(web.Server):
    __slots__ = ()

    def __call__(self) -> web.RequestHandler:
        """A connection's handler, made as `web.Server.__call__` makes it."""
        return _Handler(self, loop=self._loop, **self._kwargs)


class _Handler(web.RequestHandler):
    __slots__ = ()

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if (
            isinstance(resp, web.Response)
            and resp.status >= 400
            and resp.content_type != "application/json"
        ):
            # The body changes: its type and length are the new one's.
            dropped = {hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH}
            headers = {k: v for k, v in resp.headers.items() if k not in dropped}
            answer = error_response(resp.status, resp.text or resp.reason, headers)
            if resp.keep_alive is False:  # handle_error closes a connection it cannot read
                answer.force_close()
            resp = answer
        return await super().finish_response(request, resp, start_time)
