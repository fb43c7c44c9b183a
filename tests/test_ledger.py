"""The transport-level ledger on conversations built byte by byte (DESIGN.md section 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builder import Conversation
from conftest import analyze_json, check_conservation

# Ethernet 14 + IPv4 20 + TCP 20: every bare segment the builder writes.
BARE = 54
# Bytes no decoder recognises, on a port nobody hints at: the opaque decoder's case.
NOISE = bytes(range(7, 250)) * 8


def one(tmp_path: Path, conv: Conversation, **kw: Any) -> dict[str, Any]:
    result = analyze_json([conv.write(tmp_path / "c.pcap", **kw)])
    check_conservation(result)
    assert len(result["connections"]) == 1
    conn: dict[str, Any] = result["connections"][0]
    return conn


def noise_conv(**kw: Any) -> Conversation:
    return Conversation(resp_port=9999, **kw)


def test_handshake_data_and_close_land_in_their_buckets(tmp_path: Path) -> None:
    conv = noise_conv().handshake().orig(NOISE[:100]).resp(NOISE[:200]).close()
    conn = one(tmp_path, conv)
    assert conn["tcp_handshake"] is True
    assert conn["setup_bytes"] == 3 * BARE  # SYN, SYN-ACK, the ACK of the SYN-ACK
    assert conn["undecoded_bytes"] == (BARE + 100) + (BARE + 200)
    assert conn["control_bytes"] == 2 * BARE  # ACKs of undecoded bytes
    assert conn["teardown_bytes"] == 3 * BARE  # FIN, FIN, last ACK
    assert conn["wire_bytes"] == 10 * BARE + 300
    assert conn["layers"] == {
        "link": 10 * 14,
        "ip": 10 * 20,
        "tcp": 10 * 20,
        "tls": 0,
        "framing": 0,
        "payload": 0,
        "opaque": 300,
    }
    assert conn["protocol"] == "unknown" and conn["messages"] is None
    assert conn["setup_round_trips"] == 1
    assert conn["closed"] == "fin"
    assert conn["directions"]["orig"]["packets"] == 6
    assert conn["orig"] == "198.18.0.1:40000" and conn["resp"] == "198.18.0.2:9999"


def test_duplicated_segment_counts_as_retransmission(tmp_path: Path) -> None:
    conv = noise_conv(mss=100).handshake().orig(NOISE[:250], duplicate=(1,)).close()
    conn = one(tmp_path, conv)
    assert conn["retransmitted_bytes"] == 100
    assert conn["undecoded_bytes"] == 4 * BARE + 350
    assert conn["missing_bytes"] == 0


def test_reordered_segments_are_not_retransmissions(tmp_path: Path) -> None:
    conv = noise_conv(mss=100).handshake().orig(NOISE[:250], reorder=True).close()
    conn = one(tmp_path, conv)
    assert conn["retransmitted_bytes"] == 0
    assert conn["missing_bytes"] == 0
    assert conn["undecoded_bytes"] == 3 * BARE + 250


def test_lost_segment_becomes_a_gap_never_invented(tmp_path: Path) -> None:
    conv = noise_conv(mss=100).handshake().orig(NOISE[:250], drop=(1,)).close()
    conn = one(tmp_path, conv)
    assert conn["missing_bytes"] == 100
    assert {"name": "tcp.gap", "count": 1} in conn["anomalies"]
    assert conn["layers"]["opaque"] == 150  # only what was captured


def test_capture_joined_mid_connection(tmp_path: Path) -> None:
    conv = noise_conv().orig(NOISE[:10]).resp(NOISE[:20])
    conn = one(tmp_path, conv)
    assert conn["tcp_handshake"] is False
    assert conn["setup_bytes"] == 0
    assert conn["setup_round_trips"] == 0
    assert conn["wire_bytes"] == 4 * BARE + 30


def test_server_speaking_first_mid_connection_is_still_resp(tmp_path: Path) -> None:
    conv = Conversation(resp_port=80).resp(b"\x00" * 10).orig(b"\x01" * 5)
    conn = one(tmp_path, conv)
    assert conn["resp"].endswith(":80")


def test_new_syn_on_a_closed_four_tuple_is_a_new_connection(tmp_path: Path) -> None:
    conv = noise_conv().handshake().orig(NOISE[:10]).close()
    conv.seq = [90000, 70000]
    conv.handshake().orig(NOISE[:20]).close()
    result = analyze_json([conv.write(tmp_path / "c.pcap")])
    check_conservation(result)
    # handshake 3 + data 1 + its ACK 1 + close 3 = 8 bare segments each
    assert [c["wire_bytes"] for c in result["connections"]] == [8 * BARE + 10, 8 * BARE + 20]
    assert all(c["tcp_handshake"] for c in result["connections"])


def test_idle_connection_is_finalised_and_a_later_packet_starts_another(tmp_path: Path) -> None:
    conv = noise_conv().handshake().orig(NOISE[:10])
    conv.ts += 400  # past IDLE_TIMEOUT_S
    conv.orig(NOISE[:10])
    result = analyze_json([conv.write(tmp_path / "c.pcap")])
    check_conservation(result)
    assert len(result["connections"]) == 2
    assert [c["tcp_handshake"] for c in result["connections"]] == [True, False]


def test_reset_is_teardown(tmp_path: Path) -> None:
    conv = noise_conv().handshake().orig(NOISE[:10]).reset(1)
    conn = one(tmp_path, conv)
    assert conn["teardown_bytes"] == BARE
    assert conn["closed"] == "rst"


def test_snaplen_cut_still_counts_original_lengths(tmp_path: Path) -> None:
    conv = noise_conv().handshake().orig(NOISE[:200]).resp(NOISE[:100]).close()
    conn = one(tmp_path, conv, snaplen=60)
    assert conn["wire_bytes"] == 10 * BARE + 300
    assert conn["layers"]["opaque"] == 300
    assert conn["undecoded_bytes"] >= 300


def test_ipv6(tmp_path: Path) -> None:
    conv = noise_conv(ipv6=True).handshake().orig(NOISE[:10]).close()
    conn = one(tmp_path, conv)
    assert conn["layers"]["ip"] == 8 * 40
    assert conn["orig"] == "[2001:db8::1]:40000"


def test_sequence_numbers_wrapping_around(tmp_path: Path) -> None:
    conv = noise_conv(mss=100, isn=(2**32 - 150, 2**32 - 1)).handshake()
    conv.orig(NOISE[:240]).resp(NOISE[:50]).close()
    conn = one(tmp_path, conv)
    assert conn["missing_bytes"] == 0 and conn["retransmitted_bytes"] == 0
    assert conn["layers"]["opaque"] == 290


def test_retiring_messages_changes_no_figure(tmp_path: Path, monkeypatch: Any) -> None:
    """A long connection retires finished messages to a spool; every figure stays the same."""
    from analyzer import accounting, pipeline

    conv = Conversation(resp_port=80).handshake()
    for i in range(40):
        body = b"x" * (i + 1)
        conv.orig(
            b"POST /m HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        conv.resp(b"HTTP/1.1 204 No Content\r\n\r\n")
    conv.close()
    path = conv.write(tmp_path / "long.pcap")
    whole = analyze_json([path])
    monkeypatch.setattr(accounting, "RETIRE_THRESHOLD", 4)
    spooled: list[int] = []
    real = pipeline.connection_records

    def spy(conn: Any) -> Any:
        spooled.append(conn.ledger.retired)
        return real(conn)

    monkeypatch.setattr(pipeline, "connection_records", spy)
    retired = analyze_json([path])
    assert spooled and spooled[0] >= 30, "most messages must have gone through the spool"
    check_conservation(retired)
    assert retired["connections"] == whole["connections"]
    assert retired["summary"] == whole["summary"]
    by_index = {m["index"]: m for m in retired["messages"]}
    assert [by_index[i] for i in range(40)] == whole["messages"]


def test_ack_of_bytes_the_capture_never_saw_is_control(tmp_path: Path) -> None:
    conv = noise_conv().handshake().orig(NOISE[:10])
    conv.resp(NOISE[:500], drop=(0,))  # the server's data was not captured, its ACK was
    conv.close()
    conn = one(tmp_path, conv)
    # ACK of orig's 10 bytes + ACK of resp's unseen 500 bytes: both control
    assert conn["control_bytes"] == 2 * BARE
    assert not [a for a in conn["anomalies"] if a["name"].startswith("wireprobe.")]
