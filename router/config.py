"""The router's settings: read from the environment (docs/router.md), validated, with the
one place each default is written. Pure: `from_env` takes the environment as a mapping.

Every error is a `ConfigError` whose text starts with the setting (or API field) at fault
and says what was expected and what was seen.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from peerlab.router.nfqueue import BACKENDS as SHAPER_BACKENDS

# RFC 4787 behaviours (docs/router.md). "none" exists in the lab's vocabulary but means
# "no router at all", so a router never takes it.
NAT_TYPES = ("full-cone", "address-restricted", "port-restricted", "symmetric", "udp-blocked")
# These send new inbound UDP to "the" LAN host, so there must be exactly one.
SINGLE_HOST_NAT_TYPES = ("full-cone", "address-restricted")

DEFAULT_NAME = "router"
DEFAULT_NAT = "port-restricted"
DEFAULT_SEED = 0
DEFAULT_CONTROL_PORT = 8080
DEFAULT_SHAPER = "auto"
# Linux NAT does not hairpin; most home routers do (RFC 4787 REQ-9 asks for it). Off by
# default so that a LAN behaves as before unless a scenario asks.
DEFAULT_HAIRPIN = False
_BOOLEANS = {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False}


class ConfigError(ValueError):
    """A setting or request field is invalid; the message names it."""


@dataclass(frozen=True)
class RouterConfig:
    name: str
    wan_address: str
    lan_address: str
    wan_spare: str | None
    lan_hosts: tuple[str, ...]
    nat: str
    hairpin: bool
    seed: int
    control_port: int
    shaper: str


def from_env(env: Mapping[str, str]) -> RouterConfig:
    """The router's configuration from environment variables (ROUTER_*)."""
    wan = parse_ipv4(_required(env, "ROUTER_WAN_ADDRESS"), "ROUTER_WAN_ADDRESS")
    lan = parse_ipv4(_required(env, "ROUTER_LAN_ADDRESS"), "ROUTER_LAN_ADDRESS")
    if wan == lan:
        raise ConfigError(
            f"ROUTER_LAN_ADDRESS: must differ from ROUTER_WAN_ADDRESS, both are {wan}"
        )
    spare_text = env.get("ROUTER_WAN_SPARE", "").strip()
    spare = parse_ipv4(spare_text, "ROUTER_WAN_SPARE") if spare_text else None
    if spare in (wan, lan):
        raise ConfigError(
            f"ROUTER_WAN_SPARE: must be a second WAN address, different from "
            f"ROUTER_WAN_ADDRESS {wan} and ROUTER_LAN_ADDRESS {lan}; got {spare}"
        )
    hosts = parse_hosts(env.get("ROUTER_LAN_HOSTS", ""), lan)
    nat = check_nat_type(env.get("ROUTER_NAT", DEFAULT_NAT).strip(), hosts, "ROUTER_NAT")
    hairpin_text = env.get("ROUTER_HAIRPIN", "").strip().lower()
    if hairpin_text and hairpin_text not in _BOOLEANS:
        raise ConfigError(
            f"ROUTER_HAIRPIN: expected one of {', '.join(_BOOLEANS)}, got {hairpin_text!r}"
        )
    hairpin = check_hairpin(_BOOLEANS.get(hairpin_text, DEFAULT_HAIRPIN), nat, "ROUTER_HAIRPIN")
    shaper = env.get("ROUTER_SHAPER", DEFAULT_SHAPER).strip()
    if shaper not in SHAPER_BACKENDS:
        raise ConfigError(
            f"ROUTER_SHAPER: expected one of {', '.join(SHAPER_BACKENDS)}, got {shaper!r}"
        )
    port = _integer(env, "ROUTER_CONTROL_PORT", DEFAULT_CONTROL_PORT)
    if not 0 <= port <= 65535:
        raise ConfigError(f"ROUTER_CONTROL_PORT: expected a port 0..65535, got {port}")
    return RouterConfig(
        name=env.get("ROUTER_NAME", "").strip() or DEFAULT_NAME,
        wan_address=wan,
        lan_address=lan,
        wan_spare=spare,
        lan_hosts=hosts,
        nat=nat,
        hairpin=hairpin,
        seed=_integer(env, "ROUTER_SEED", DEFAULT_SEED),
        control_port=port,
        shaper=shaper,
    )


def check_nat_type(nat: object, lan_hosts: tuple[str, ...], setting: str) -> str:
    """`nat` if this router can take it with these LAN hosts; `setting` names the source
    (ROUTER_NAT, or the API field "type") in the error."""
    if nat == "none":
        raise ConfigError(
            f"{setting}: 'none' means no router at all (put the peer on the lab network); "
            f"a router takes one of {', '.join(NAT_TYPES)}"
        )
    if nat not in NAT_TYPES:
        raise ConfigError(f"{setting}: expected one of {', '.join(NAT_TYPES)}, got {nat!r}")
    assert isinstance(nat, str)
    if nat in SINGLE_HOST_NAT_TYPES and len(lan_hosts) != 1:
        raise ConfigError(
            f"{setting}: {nat} sends new inbound UDP to the one LAN host, so it needs exactly "
            f"one in ROUTER_LAN_HOSTS; got {len(lan_hosts)} ({', '.join(lan_hosts) or 'none'})"
        )
    return nat


def check_hairpin(hairpin: object, nat: str, setting: str) -> bool:
    """`hairpin` if it is a boolean the NAT type `nat` can take; `setting` names the
    source (ROUTER_HAIRPIN, or the API field "hairpin") in the error."""
    if not isinstance(hairpin, bool):
        raise ConfigError(f"{setting}: expected true or false, got {hairpin!r}")
    if hairpin and nat == "udp-blocked":
        raise ConfigError(
            f"{setting}: a udp-blocked router lets no UDP through, so it has no mapping to "
            "hairpin; turn hairpinning off or pick another NAT type"
        )
    return hairpin


def parse_ipv4(text: object, setting: str) -> str:
    """A dotted IPv4 address, normalized; `setting` names it in the error."""
    if not isinstance(text, str):
        raise ConfigError(f"{setting}: expected an IPv4 address string, got {text!r}")
    try:
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise ConfigError(f"{setting}: expected an IPv4 address, got {text!r}") from None


def parse_hosts(text: str, lan_address: str) -> tuple[str, ...]:
    """ROUTER_LAN_HOSTS: comma-separated IPv4 addresses of the peers behind the router."""
    hosts = tuple(parse_ipv4(part, "ROUTER_LAN_HOSTS") for part in text.split(",") if part.strip())
    duplicates = sorted({h for h in hosts if hosts.count(h) > 1})
    if duplicates:
        raise ConfigError(f"ROUTER_LAN_HOSTS: {', '.join(duplicates)} listed more than once")
    if lan_address in hosts:
        raise ConfigError(
            f"ROUTER_LAN_HOSTS: {lan_address} is the router's own LAN address "
            "(ROUTER_LAN_ADDRESS), not a host behind it"
        )
    return hosts


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name}: required, not set")
    return value


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, got {text!r}") from None
