"""Reads the verdicts of coturn's RFC 5780 client, `turnutils_natdiscovery`, into RFC 4787
terms and the lab's NAT type names (docs/router.md). Pure: text in, dict out.

Run the two tests separately, each from fresh NAT state (docs/router.md says why):
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
    elif mapping in ("address-dependent", "address-and-port-dependent"):
        nat_type = "symmetric"
    elif (mapping, filtering) in _NAT_TYPES:
        nat_type = _NAT_TYPES[mapping, filtering]
    elif all(_TIMEOUT in out and not answered(out) for out in (mapping_output, filtering_output)):
        nat_type = "udp-blocked"
    else:
        nat_type = UNKNOWN
    return {"mapping": mapping, "filtering": filtering, "nat_type": nat_type}
