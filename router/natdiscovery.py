"""NAT behaviour verdicts in RFC 4787 terms and the lab's NAT type names (docs/router.md),
from two independent measurements. Pure: measurements in, dict out.

`judge` reads the report of the lab's own RFC 5780 probe (router/nat_probe.py), which
proves every LAN's NAT when a stack starts. `classify` reads what coturn's RFC 5780
client, `turnutils_natdiscovery`, printed: `nat_matrix` runs it beside the probe on every
NAT type, so the probe is checked against a client it shares no code with.

Run coturn's two tests separately, each from fresh NAT state (docs/router.md says why):
`turnutils_natdiscovery -f STUN` (filtering) and `turnutils_natdiscovery -m STUN` (mapping).
Each ends with one verdict line between two lines of "=":

    NAT with Endpoint Independent Mapping!
    NAT with Address Dependent Mapping!
    NAT with Address and Port Dependent Mapping!
    NAT with Endpoint Independent Filtering!
    NAT with Address Dependent Filtering!
    NAT with Address and Port Dependent Filtering!
    No NAT! (Endpoint Independent Mapping)      (only when the local address is the mapped one)

No verdict is printed when the first binding request gets no answer ("STUN receive
timeout..", e.g. UDP blocked) or the server does not do RFC 5780 (no "Other addr" line).
"""

from __future__ import annotations

import re
from typing import Any

BEHAVIOURS = ("endpoint-independent", "address-dependent", "address-and-port-dependent")
UNKNOWN = "unknown"

_VERDICT = re.compile(
    r"^NAT with (Endpoint Independent|Address Dependent|Address and Port Dependent) "
    r"(Mapping|Filtering)!$",
    re.MULTILINE,
)
_NO_NAT = "No NAT! (Endpoint Independent Mapping)"
_TIMEOUT = "STUN receive timeout"
_RESPONSE = re.compile(r"^RFC 5780 response \d+$", re.MULTILINE)
_REFLEXIVE = re.compile(r"UDP reflexive addr: (\S+)")

# (mapping, filtering) -> the lab's NAT type (RFC 4787 section 4-5).
_NAT_TYPES = {
    ("endpoint-independent", "endpoint-independent"): "full-cone",
    ("endpoint-independent", "address-dependent"): "address-restricted",
    ("endpoint-independent", "address-and-port-dependent"): "port-restricted",
}


def behaviour(output: str, kind: str) -> str:
    """The last `kind` ("Mapping" or "Filtering") verdict in `output`, as one of BEHAVIOURS,
    or "unknown" when there is none."""
    found = [m.group(1) for m in _VERDICT.finditer(output) if m.group(2) == kind]
    if not found:
        return UNKNOWN
    return found[-1].lower().replace(" ", "-")


def answered(output: str) -> bool:
    """Whether the STUN server answered at least one binding request."""
    return bool(_RESPONSE.search(output))


def reflexive_addresses(output: str) -> list[str]:
    """Every "UDP reflexive addr" (the mapped address:port the server saw), in order; also
    for `turnutils_stunclient`'s output."""
    return _REFLEXIVE.findall(output)


def judge(report: dict[str, Any]) -> dict[str, str]:
    """{"mapping", "filtering", "nat_type"} from the NAT probe's report (its format in
    router/nat_probe.py), with "problem" when the report cannot be trusted.

    nat_type as `classify` says; "udp-blocked" when the first request got no answer (a
    dead STUN server looks the same: check that it answers over TCP). An answer to a
    CHANGE-REQUEST must come from the source asked for: one from anywhere else means the
    server ignored the request, and the filtering is unknown.
    """
    verdict = {"mapping": UNKNOWN, "filtering": UNKNOWN, "nat_type": UNKNOWN}
    if not report.get("answered"):
        return {**verdict, "nat_type": "udp-blocked"}
    if "error" in report:
        return {**verdict, "problem": report["error"]}
    server_ip = report["server"].rsplit(":", 1)[0]
    other = report["other_address"]
    other_port = other.rsplit(":", 1)[1]
    expected = {"change_ip_and_port": other, "change_port": f"{server_ip}:{other_port}"}
    sources = report["filtering"]
    wrong = [f"{n} answered from {sources[n]}, not {e}" for n, e in expected.items()
             if sources[n] is not None and sources[n] != e]  # fmt: skip
    if wrong:
        verdict["problem"] = "the server ignored a CHANGE-REQUEST: " + "; ".join(wrong)
    elif sources["change_ip_and_port"]:
        verdict["filtering"] = "endpoint-independent"
    elif sources["change_port"]:
        verdict["filtering"] = "address-dependent"
    else:
        verdict["filtering"] = "address-and-port-dependent"
    seen = report["mapping"]
    if None in seen.values():
        missing = [name for name, address in seen.items() if address is None]
        verdict["problem"] = f"no answer to the mapping test's {', '.join(missing)} request"
        return verdict
    if seen["primary"].rsplit(":", 1)[0] == report["local"]:
        return {**verdict, "mapping": "endpoint-independent", "nat_type": "none"}
    if seen["primary"] == seen["other_ip"]:
        verdict["mapping"] = "endpoint-independent"
    elif seen["other_ip"] == seen["other"]:
        verdict["mapping"] = "address-dependent"
    else:
        verdict["mapping"] = "address-and-port-dependent"
    if "problem" not in verdict:
        verdict["nat_type"] = _nat_type(verdict["mapping"], verdict["filtering"])
    return verdict


def classify(filtering_output: str, mapping_output: str) -> dict[str, str]:
    """{"mapping", "filtering", "nat_type"} from the outputs of the filtering (-f) and the
    mapping (-m) test.

    nat_type: "none" when the client saw its own address mapped (no NAT); full-cone,
    address-restricted or port-restricted for endpoint-independent mapping with the
    matching filtering; "symmetric" for any other known mapping; "udp-blocked" when both
    tests timed out without a single answer (a dead STUN server looks the same: check that
    it answers over TCP); "unknown" otherwise.
    """
    mapping = behaviour(mapping_output, "Mapping")
    filtering = behaviour(filtering_output, "Filtering")
    if _NO_NAT in mapping_output or _NO_NAT in filtering_output:
        nat_type = "none"
    elif all(_TIMEOUT in out and not answered(out) for out in (mapping_output, filtering_output)):
        nat_type = "udp-blocked"
    else:
        nat_type = _nat_type(mapping, filtering)
    return {"mapping": mapping, "filtering": filtering, "nat_type": nat_type}


def _nat_type(mapping: str, filtering: str) -> str:
    if mapping in ("address-dependent", "address-and-port-dependent"):
        return "symmetric"
    return _NAT_TYPES.get((mapping, filtering), UNKNOWN)
