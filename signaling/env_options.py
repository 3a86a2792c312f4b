"""Command-line options backed by environment variables, read the same way by both
PeerLab programs (`python -m peerlab.signaling`, `python -m peerlab.peer`).

An option's default is its environment variable (an empty one counts as unset: Compose
writes `${X:-}` for "not set"), else a fixed default. The default stays a string, so
argparse converts it as it converts a value given on the command line: a bad value is
the same usage error (exit status 2, no traceback), and names the variable when the
value came from it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def env_option(
    parser: argparse.ArgumentParser,
    option: str,
    variable: str,
    default: str | None = None,
    convert: Callable[[str], Any] | None = None,
    *,
    help: str,
    **kwargs: Any,
) -> None:
    """Add `option`, whose default is the environment variable `variable`, else `default`."""
    if convert is not None:
        kwargs["type"] = _naming(variable, convert)
    where = f"env {variable}" if default is None else f"env {variable}; default %(default)s"
    parser.add_argument(
        option, default=os.environ.get(variable) or default, help=f"{help} ({where})", **kwargs
    )


def _naming(variable: str, convert: Callable[[str], T]) -> Callable[[str], T]:
    """`convert`, whose error names `variable` when the bad value is the variable's."""

    def parse(text: str) -> T:
        try:
            return convert(text)
        except argparse.ArgumentTypeError as exc:
            if text == os.environ.get(variable):
                raise argparse.ArgumentTypeError(f"{variable}={text!r}: {exc}") from None
            raise

    return parse


def number(kind: Callable[[str], T], text: str) -> T:
    """`text` as an int or float (`kind`), or a usage error."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None


def port(text: str) -> int:
    """An option type: a TCP port, 0 (any) to 65535."""
    value = number(int, text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0..65535, not {value}")
    return value
