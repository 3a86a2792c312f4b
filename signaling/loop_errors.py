"""Rate-limited logging of the event loop's own errors, failed ``accept()`` calls above all.

When the process runs out of file descriptors, asyncio reports every failed
``accept()`` to the loop's exception handler, and the default handler logs each
one with a traceback: hundreds of lines a second. :class:`LoopErrorLog` replaces
that handler while the server runs: at most one line per kind of error per
interval, with the number suppressed, and no traceback for errors that are
expected of a network server (descriptor or buffer exhaustion, peers resetting).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from typing import Any

from peerlab.signaling.ratelimit import LogThrottle

log = logging.getLogger("signaling")

# Conditions a server meets in normal life: say so in one line, no traceback.
EXPECTED_ERRNOS = frozenset(
    {
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOBUFS,
        errno.ENOMEM,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
    }
)

LoopHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


def error_kind(exc: BaseException | None) -> str:
    """A short name for the throttle: the errno's name, else the exception's class name.

    Never the message, which can carry addresses: the set of kinds stays small.
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, f"errno {exc.errno}")
    return type(exc).__name__ if exc is not None else "no_exception"


def is_expected(exc: BaseException | None) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return isinstance(exc, OSError) and exc.errno in EXPECTED_ERRNOS


class LoopErrorLog:
    """An asyncio exception handler that logs through a :class:`LogThrottle`."""

    def __init__(self, throttle: LogThrottle, monotonic: Callable[[], float]) -> None:
        self._throttle = throttle
        self._monotonic = monotonic
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: LoopHandler | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._previous = loop, loop.get_exception_handler()
        loop.set_exception_handler(self)

    def uninstall(self) -> None:
        """Give the loop its previous handler back."""
        if self._loop is not None:
            self._loop.set_exception_handler(self._previous)
            self._loop = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        kind = error_kind(exc)
        suppressed = self._throttle.allow(f"loop_error:{kind}", self._monotonic())
        if suppressed is None:
            return
        message = _first_line(str(context.get("message") or ""))
        if is_expected(exc):
            _log(logging.WARNING, kind, message, suppressed, None)
        else:
            _log(logging.ERROR, kind, message, suppressed, exc)


def _first_line(text: str) -> str:
    return (text.splitlines() or [""])[0][:200]


def _log(level: int, kind: str, message: str, suppressed: int, exc: BaseException | None) -> None:
    fields = {"error": kind, "message": message, "suppressed": suppressed}
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    log.log(level, "loop_error", extra={"fields": fields}, exc_info=exc_info)
