"""Command-line options backed by environment variables, read the same way by both
PeerLab programs (`python -m peerlab.signaling`, `python -m peerlab.peer`).

An option's default is its environment variable (an empty one counts as unset: Compose
writes `${X:-}` for "not set"), else a fixed default. The default stays a string, so
argparse converts it as it converts a value given on the command line: a bad value is
the same usage error (exit status 2, no traceback), and names the variable when the
value came from it (not the value itself, for a `secret` option).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import re
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
    secret: bool = False,
    **kwargs: Any,
) -> None:
    """Add `option`, whose default is the environment variable `variable`, else `default`.
    Neither `--help` nor an error about a `secret` option's value shows the value."""
    if convert is not None:
        kwargs["type"] = _naming(variable, convert, secret)
    where = f"env {variable}" if default is None else f"env {variable}; default %(default)s"
    if secret:
        # An ArgumentDefaultsHelpFormatter appends "(default: <value>)", the variable's
        # secret, unless the help names the default itself: naming it in a zero-width
        # field keeps it off the screen.
        where += "%(default).0s"
    parser.add_argument(
        option, default=os.environ.get(variable) or default, help=f"{help} ({where})", **kwargs
    )


def _naming(variable: str, convert: Callable[[str], T], secret: bool) -> Callable[[str], T]:
    """`convert`, whose error names `variable` when the bad value is the variable's."""

    def parse(text: str) -> T:
        try:
            return convert(text)
        except argparse.ArgumentTypeError as exc:
            if text == os.environ.get(variable):
                named = variable if secret else f"{variable}={text!r}"
                raise argparse.ArgumentTypeError(f"{named}: {exc}") from None
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


# A host name's label (RFC 1123), plus "_": Docker's resolver serves names holding one.
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def host(text: str) -> str:
    """An option type: an IP address, or a host name whose last label is not all digits
    (so that a mistyped IPv4 address such as 999.1.1.1 is refused, not looked up)."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(text)
        return text
    labels = text.removesuffix(".").split(".")
    if len(text) <= 253 and all(map(_LABEL.fullmatch, labels)) and not labels[-1].isdigit():
        return text
    raise argparse.ArgumentTypeError(f"expected an IP address or a host name, not {text!r}")


def utf8(text: str) -> str:
    """An option type: text that UTF-8 can encode. The environment may hold any bytes
    (Python keeps the undecodable ones as lone surrogates), and a secret is hashed as UTF-8."""
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise argparse.ArgumentTypeError(f"not UTF-8 text (at character {exc.start + 1})") from None
    return text
