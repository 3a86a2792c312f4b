"""Catches what an in-process target logs as a failure: ERROR records and tracebacks.

Installed on the root logger and as the event loop's exception handler while a campaign
runs. (The signaling server installs its own loop handler while it runs, which logs the
unexpected errors at ERROR with their traceback: they arrive here through logging.) The
campaign takes the new entries after every case, so each is reported with the case that
was running when it was logged.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Any, Self


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._entries: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.ERROR and record.exc_info is None:
            return
        fields = getattr(record, "fields", None)
        entry = f"logged {record.levelname} by {record.name}: {record.getMessage()}"
        if fields:
            entry += f" {fields}"
        if record.exc_info and record.exc_info[1] is not None:
            entry += f" with traceback: {_last_frame(record.exc_info[1])}"
        self._entries.append(entry)

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        entry = f"event loop exception handler: {context.get('message')}"
        if exc is not None:
            entry += f": {_last_frame(exc)}"
        self._entries.append(entry)

    def take(self) -> list[str]:
        """The entries since the last call."""
        entries, self._entries = self._entries, []
        return entries

    def __enter__(self) -> Self:
        logging.getLogger().addHandler(self)
        self._loop = asyncio.get_running_loop()
        self._loop.set_exception_handler(self.loop_exception)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        logging.getLogger().removeHandler(self)
        if self._loop is not None:
            self._loop.set_exception_handler(None)


def _last_frame(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else ""
    return f"{type(exc).__name__}: {str(exc)[:300]}{where}"
