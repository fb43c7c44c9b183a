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
    from analyzer import pipeline
    from analyzer.accounting import ledger as accounting

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
    # Batches of 7: several written to the spool, and a part batch still in memory at the end.
    monkeypatch.setattr(accounting, "SPOOL_BATCH", 7)
    spooled: list[int] = []
    real = pipeline.connection_records

    def spy(conn: Any) -> Any:
        spooled.append(conn.ledger.retired)
        return real(conn)

    monkeypatch.setattr(pipeline, "connection_records", spy)
    retired = analyze_json([path])
    assert spooled and spooled[0] >= 30, "most messages must have gone through the spool"
    assert spooled[0] % 7, "the test needs a part batch"
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


REQ = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"


def body_response(n: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"b" * n


def test_messages_retire_when_acks_ride_on_data(tmp_path: Path, monkeypatch: Any) -> None:
    from analyzer import pipeline
    from analyzer.accounting import ledger as accounting

    conv = Conversation(resp_port=80).handshake()
    for _ in range(30):
        conv.orig(REQ, ack=False).resp(b"HTTP/1.1 204 No Content\r\n\r\n", ack=False)
    conv.close()
    monkeypatch.setattr(accounting, "RETIRE_THRESHOLD", 4)
    retired: list[int] = []
    real = pipeline.connection_records
    monkeypatch.setattr(
        pipeline, "connection_records", lambda c: (retired.append(c.ledger.retired), real(c))[1]
    )
    result = analyze_json([conv.write(tmp_path / "c.pcap")])
    check_conservation(result)
    assert retired[0] >= 20


def test_fin_waits_for_a_segment_lost_before_it(tmp_path: Path) -> None:
    conv = Conversation(resp_port=80, mss=1000).handshake().orig(REQ)
    data = body_response(2000)
    start = conv.seq[1]
    conv.resp(data, drop=(2,), ack=False)  # the last segment is lost ...
    conv.emit(1, start + len(data), 0x11)  # ... the FIN comes ...
    conv.emit(1, start + 2000, 0x18, data[2000:])  # ... then the retransmission
    conv.seq[1] += 1
    conv.emit(0, conv.seq[0], 0x11)
    conn = one(tmp_path, conv)
    assert conn["messages"] == 1 and conn["missing_bytes"] == 0
    assert conn["layers"]["payload"] == 2000 and not conn["anomalies"]


def test_keep_alive_probe_first_does_not_shift_the_stream(tmp_path: Path) -> None:
    conv = Conversation(resp_port=9999)
    conv.emit(0, conv.seq[0] - 1, 0x10)  # keep-alive probe: seq = next - 1, no data
    conv.orig(REQ).resp(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    conn = one(tmp_path, conv)
    assert conn["protocol"] == "http1" and conn["messages"] == 1
    assert conn["missing_bytes"] == 0


def test_ack_captured_before_its_data_is_no_gap(tmp_path: Path) -> None:
    conv = Conversation(resp_port=80, mss=1000).handshake()
    post = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1500\r\n\r\n" + b"p" * 1500
    start = conv.seq[0]
    conv.seq[0] += len(post)
    conv.emit(0, start + 1000, 0x18, post[1000:])  # second segment first,
    conv.emit(1, conv.seq[1], 0x10)  # the server's ACK of both,
    conv.emit(0, start, 0x18, post[:1000])  # then the first segment
    conv.resp(b"HTTP/1.1 204 No Content\r\n\r\n").close()
    conn = one(tmp_path, conv)
    assert conn["missing_bytes"] == 0 and conn["retransmitted_bytes"] == 0
    assert conn["messages"] == 1 and conn["layers"]["payload"] == 1500


def test_syn_after_a_connection_joined_mid_stream_is_a_new_connection(tmp_path: Path) -> None:
    conv = Conversation(resp_port=80).orig(REQ).resp(b"HTTP/1.1 204 No Content\r\n\r\n")
    conv.seq = [777_000, 999_000]
    conv.handshake().orig(REQ).resp(b"HTTP/1.1 204 No Content\r\n\r\n").close()
    result = analyze_json([conv.write(tmp_path / "c.pcap")])
    check_conservation(result)
    assert [c["tcp_handshake"] for c in result["connections"]] == [False, True]
    assert all(c["missing_bytes"] == 0 for c in result["connections"])


def test_one_packet_from_the_future_does_not_finish_open_connections(tmp_path: Path) -> None:
    a = Conversation(resp_port=80).handshake().orig(REQ)
    stray = Conversation(resp_port=80, orig_port=40001, ts=a.ts + 10_000).handshake()
    a.frames.append(stray.frames[0])  # one SYN stamped far ahead, in capture order
    a.resp(b"HTTP/1.1 204 No Content\r\n\r\n").close()
    result = analyze_json([a.write(tmp_path / "c.pcap")])
    check_conservation(result)
    first = [c for c in result["connections"] if c["orig"].endswith(":40000")]
    assert len(first) == 1 and first[0]["messages"] == 1


def test_rst_outside_the_window_does_not_end_the_connection(tmp_path: Path) -> None:
    conv = Conversation(resp_port=80).handshake().orig(REQ)
    conv.resp(b"HTTP/1.1 204 No Content\r\n\r\n")
    conv.emit(1, conv.seq[1] + 100_000, 0x04)
    conv.ts += 70  # past the closed-connection linger
    conv.orig(REQ).resp(b"HTTP/1.1 204 No Content\r\n\r\n").close()
    conn = one(tmp_path, conv)
    assert conn["messages"] == 2 and conn["closed"] == "fin"
    assert {"name": "tcp.rst_out_of_window", "count": 1} in conn["anomalies"]


def test_a_failing_decoder_costs_decoding_not_memory(tmp_path: Path, monkeypatch: Any) -> None:
    from analyzer.protocols.http1 import decoder as http1

    calls = {"n": 0}
    real = http1.Http1Decoder.feed

    def flaky(self: Any, *args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("a decoder bug")
        return real(self, *args)

    monkeypatch.setattr(http1.Http1Decoder, "feed", flaky)
    conv = Conversation(resp_port=80).handshake()
    for _ in range(50):
        conv.orig(REQ).resp(b"HTTP/1.1 204 No Content\r\n\r\n")
    conv.close()
    captured: list[Any] = []
    from analyzer.tcp import flows

    real_finish = flows.Connection.finish

    def spy(self: Any, ts: float) -> None:
        captured.append(sum(len(d.loose) for d in self.ledger.dirs))
        real_finish(self, ts)

    monkeypatch.setattr(flows.Connection, "finish", spy)
    conn = one(tmp_path, conv)
    assert {"name": "wireprobe.decoder_error", "count": 1} in conn["anomalies"]
    assert captured == [0], "spans after the failure must not pile up out of order"


def test_server_speaking_first_on_an_unknown_port_still_decodes(tmp_path: Path) -> None:
    """Joined mid-connection, the first packet is a response from port 9999: the roles are
    found from the content, so every exchange is still decoded."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    conv = Conversation(resp_port=9999).resp(ok)
    for _ in range(3):
        conv.orig(REQ).resp(ok)
    conv.close()
    conn = one(tmp_path, conv)
    assert conn["orig"].endswith(":9999")  # the first packet's sender, as DESIGN.md says
    assert conn["messages"] == 4 and conn["undecoded_bytes"] == 0
    result = analyze_json([tmp_path / "c.pcap"])
    assert [m["sender"] for m in result["messages"]][1:] == ["resp"] * 3  # the client's side


def test_ack_captured_just_before_its_data_still_goes_to_the_message(tmp_path: Path) -> None:
    conv = Conversation(resp_port=80).handshake().orig(REQ)
    conv.resp(b"HTTP/1.1 204 No Content\r\n\r\n").close()
    frames = conv.frames
    frames[3], frames[4] = (frames[3][0], frames[4][1]), (frames[4][0], frames[3][1])
    conn = one(tmp_path, conv)
    assert conn["control_bytes"] == 0  # the request's ACK is the exchange's, as in order
