"""Community ID: ours equals the reference package's on every connection of real captures."""

from __future__ import annotations

import ipaddress
import random

import communityid
import pytest
from conftest import CAPTURES, analyze_json, public_captures

from analyzer.tcp.communityid import community_id


def _reference(orig: str, resp: str) -> str:
    (src, sport), (dst, dport) = _split(orig), _split(resp)
    flow = communityid.FlowTuple.make_tcp(src, dst, sport, dport)
    return str(communityid.CommunityID().calc(flow))


def _split(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


def test_spec_example_and_direction_independence() -> None:
    # The spec's own TCP example (community-id-spec, baseline "tcp.pcap" first flow).
    a = (ipaddress.ip_address("66.35.250.204").packed, 80)
    b = (ipaddress.ip_address("128.232.110.120").packed, 34855)
    assert community_id(b, a) == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
    assert community_id(a, b) == community_id(b, a)


def test_random_flows_equal_the_reference_v4_and_v6() -> None:
    rng = random.Random(17)
    for _ in range(300):
        width = rng.choice((4, 16))
        src, dst = rng.randbytes(width), rng.randbytes(width)
        if rng.random() < 0.2:
            dst = src  # equal addresses: the ports decide the order
        sport, dport = rng.randrange(65536), rng.randrange(65536)
        ours = community_id((src, sport), (dst, dport))
        theirs = communityid.CommunityID().calc(
            communityid.FlowTuple.make_tcp(
                str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst)), sport, dport
            )
        )
        assert ours == theirs


@pytest.mark.parametrize(
    "capture",
    [CAPTURES / "http1-curl-http-server.pcap", *public_captures()[:4]],
    ids=lambda p: p.name,
)
def test_every_connection_carries_the_reference_id(capture: object) -> None:
    result = analyze_json([capture])  # type: ignore[list-item]
    assert result["connections"]
    for conn in result["connections"]:
        assert conn["community_id"] == _reference(conn["orig"], conn["resp"])
