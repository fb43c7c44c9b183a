"""Community ID v1 of a TCP connection: the flow hash Zeek, Suricata and Arkime print.

A row of ours can then be joined with their records of the same capture.  Implemented from the
specification (https://github.com/corelight/community-id-spec, version 1) rather than imported,
because the per-connection cost is one SHA-1 and the ``communityid`` package is kept for the test
that checks this against it (tests/test_communityid.py).

    hash = SHA1(seed:u16 | addr_lo | addr_hi | proto:u8 | 0:u8 | port_lo:u16 | port_hi:u16)
    id   = "1:" + base64(hash)

where the endpoint that sorts lower (address bytes first, then port) comes first, so both
directions of a connection get the same id.  All integers are in network byte order.
"""

from __future__ import annotations

import base64
import hashlib
import struct

#: IANA protocol number of TCP, the only transport wireprobe follows.
IPPROTO_TCP = 6
#: The specification's default seed; every tool uses it unless told otherwise.
DEFAULT_SEED = 0

_PORTS = struct.Struct("!HH")
_HEAD = struct.Struct("!H")


def community_id(orig: tuple[bytes, int], resp: tuple[bytes, int], seed: int = DEFAULT_SEED) -> str:
    """The Community ID of the TCP flow between ``orig`` and ``resp`` ((address, port) each)."""
    (a_addr, a_port), (b_addr, b_port) = orig, resp
    # The spec orders by address, then by port, so the id does not depend on the direction.
    if (a_addr, a_port) > (b_addr, b_port):
        (a_addr, a_port), (b_addr, b_port) = (b_addr, b_port), (a_addr, a_port)
    data = b"".join(
        (
            _HEAD.pack(seed),
            a_addr,
            b_addr,
            bytes((IPPROTO_TCP, 0)),
            _PORTS.pack(a_port, b_port),
        )
    )
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


__all__ = ["community_id"]
