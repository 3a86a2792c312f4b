"""STUN messages (RFC 5389), only what a binding probe needs. Pure: bytes in, bytes out.

A message is a 20-byte header (type, body length, magic cookie, 96-bit transaction id) and
attributes (type, length, value padded to 4 bytes). A probe sends a Binding request and
reads the mapped address (XOR-MAPPED-ADDRESS, or the legacy MAPPED-ADDRESS) of the answer.
For NAT behaviour discovery (RFC 5780) a request may carry a CHANGE-REQUEST, and the
server's answer names its second address in OTHER-ADDRESS.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from dataclasses import dataclass

MAGIC_COOKIE = 0x2112A442
HEADER = struct.Struct("!HHI12s")

BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111

MAPPED_ADDRESS = 0x0001
CHANGE_REQUEST = 0x0003
ERROR_CODE = 0x0009
XOR_MAPPED_ADDRESS = 0x0020
SOFTWARE = 0x8022
OTHER_ADDRESS = 0x802C
FINGERPRINT = 0x8028

FINGERPRINT_XOR = 0x5354554E
CHANGE_IP = 0x04  # CHANGE-REQUEST flags (RFC 5780 section 7.2)
CHANGE_PORT = 0x02
_ADDRESS_SIZES = {1: 4, 2: 16}  # STUN address family (IPv4, IPv6) -> address bytes


class StunError(ValueError):
    """Bytes that are not a well-formed STUN message, or an answer without an address."""


@dataclass(frozen=True, slots=True)
class StunMessage:
    type: int
    transaction_id: bytes
    attributes: tuple[tuple[int, bytes], ...] = ()

    def attribute(self, attribute_type: int) -> bytes | None:
        """The value of the first attribute of that type (RFC 5389 ignores the later ones)."""
        for kind, value in self.attributes:
            if kind == attribute_type:
                return value
        return None


def encode(message: StunMessage, fingerprint: bool = False) -> bytes:
    """The message's bytes; with `fingerprint`, a FINGERPRINT attribute is appended."""
    if len(message.transaction_id) != 12:
        raise StunError(f"transaction id: expected 12 bytes, got {len(message.transaction_id)}")
    if not 0 <= message.type < 0x4000:
        raise StunError(f"message type: expected 0..0x3fff, got {message.type:#x}")
    body = b"".join(_attribute(kind, value) for kind, value in message.attributes)
    if fingerprint:
        # The CRC covers the message with its length already counting the fingerprint.
        head = HEADER.pack(message.type, len(body) + 8, MAGIC_COOKIE, message.transaction_id)
        crc = zlib.crc32(head + body) ^ FINGERPRINT_XOR
        body += _attribute(FINGERPRINT, struct.pack("!I", crc))
    return HEADER.pack(message.type, len(body), MAGIC_COOKIE, message.transaction_id) + body


def decode(data: bytes) -> StunMessage:
    """Parse and check a STUN message (header, attribute framing, FINGERPRINT if present)."""
    if len(data) < HEADER.size:
        raise StunError(f"expected at least a 20-byte STUN header, got {len(data)} bytes")
    kind, length, cookie, transaction_id = HEADER.unpack_from(data)
    if kind & 0xC000:
        raise StunError(f"message type: expected the top two bits 0, got {kind:#06x}")
    if cookie != MAGIC_COOKIE:
        raise StunError(f"magic cookie: expected {MAGIC_COOKIE:#x}, got {cookie:#x}")
    if length % 4 or HEADER.size + length != len(data):
        raise StunError(
            f"message length: expected a multiple of 4 equal to the {len(data) - HEADER.size} "
            f"bytes after the header, got {length}"
        )
    attributes = []
    offset = HEADER.size
    while offset < len(data):
        if offset + 4 > len(data):
            raise StunError(f"attribute at byte {offset}: truncated header")
        attribute_type, attribute_length = struct.unpack_from("!HH", data, offset)
        value = data[offset + 4 : offset + 4 + attribute_length]
        if len(value) != attribute_length:
            raise StunError(
                f"attribute {attribute_type:#06x}: expected {attribute_length} bytes of value, "
                f"got {len(value)}"
            )
        if attribute_type == FINGERPRINT:
            _check_fingerprint(data, offset, value)
        attributes.append((attribute_type, value))
        offset += 4 + attribute_length + (-attribute_length % 4)
    return StunMessage(kind, transaction_id, tuple(attributes))


def binding_request(transaction_id: bytes, change: int = 0) -> bytes:
    """A Binding request; `change` (CHANGE_IP | CHANGE_PORT) asks an RFC 5780 server to
    answer from its other address and/or port."""
    attributes = ((CHANGE_REQUEST, struct.pack("!I", change)),) if change else ()
    return encode(StunMessage(BINDING_REQUEST, transaction_id, attributes), fingerprint=True)


def encode_xor_address(host: str, port: int, transaction_id: bytes) -> bytes:
    """The value of an XOR-MAPPED-ADDRESS attribute for host:port."""
    address = ipaddress.ip_address(host)
    family = 1 if address.version == 4 else 2
    key = struct.pack("!I", MAGIC_COOKIE) + transaction_id
    packed = bytes(a ^ b for a, b in zip(address.packed, key, strict=False))
    return struct.pack("!BBH", 0, family, port ^ (MAGIC_COOKIE >> 16)) + packed


def mapped_address(message: StunMessage) -> tuple[str, int]:
    """The (host, port) a Binding success response reports."""
    if message.type == BINDING_ERROR:
        raise StunError(f"binding error response: {_error_text(message)}")
    if message.type != BINDING_SUCCESS:
        raise StunError(f"expected a binding success response (0x0101), got {message.type:#06x}")
    value = message.attribute(XOR_MAPPED_ADDRESS)
    if value is not None:
        key = struct.pack("!I", MAGIC_COOKIE) + message.transaction_id
        port, packed = _address(value, "XOR-MAPPED-ADDRESS")
        packed = bytes(a ^ b for a, b in zip(packed, key, strict=False))
        return str(ipaddress.ip_address(packed)), port ^ (MAGIC_COOKIE >> 16)
    value = message.attribute(MAPPED_ADDRESS)
    if value is not None:
        port, packed = _address(value, "MAPPED-ADDRESS")
        return str(ipaddress.ip_address(packed)), port
    raise StunError("binding success response without XOR-MAPPED-ADDRESS or MAPPED-ADDRESS")


def other_address(message: StunMessage) -> tuple[str, int] | None:
    """The server's second address and port (OTHER-ADDRESS), None when it names none: a
    server that does not do RFC 5780."""
    value = message.attribute(OTHER_ADDRESS)
    if value is None:
        return None
    port, packed = _address(value, "OTHER-ADDRESS")
    return str(ipaddress.ip_address(packed)), port


def _attribute(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)


def _check_fingerprint(data: bytes, offset: int, value: bytes) -> None:
    if offset + 8 != len(data) or len(value) != 4:
        raise StunError("FINGERPRINT: expected a 4-byte value as the last attribute")
    expected = zlib.crc32(data[:offset]) ^ FINGERPRINT_XOR
    (seen,) = struct.unpack("!I", value)
    if seen != expected:
        raise StunError(f"FINGERPRINT: expected {expected:#010x}, got {seen:#010x}")


def _address(value: bytes, name: str) -> tuple[int, bytes]:
    """The port and the packed address of a (XOR-)MAPPED-ADDRESS value."""
    if len(value) < 4 or value[1] not in _ADDRESS_SIZES:
        raise StunError(f"{name}: expected family 1 (IPv4) or 2 (IPv6), got {value[:4].hex()}")
    size = _ADDRESS_SIZES[value[1]]
    if len(value) != 4 + size:
        raise StunError(f"{name}: expected {4 + size} bytes, got {len(value)}")
    (port,) = struct.unpack_from("!H", value, 2)
    return port, value[4:]


def _error_text(message: StunMessage) -> str:
    value = message.attribute(ERROR_CODE)
    if value is None or len(value) < 4:
        return "no ERROR-CODE"
    code = (value[2] & 0x7) * 100 + value[3]
    return f"{code} {value[4:].decode('utf-8', 'replace')}"
