#!/usr/bin/env python3
"""Write the hostile corpus: captures an attacker or an unlucky operator would hand wireprobe.

    scripts/make_hostile_corpus.py DIR

Every file is small (the whole corpus is about 2 MB) and made here from nothing, deterministically,
so tests/test_hostile_corpus.py builds it in a temporary folder and runs the CLI over each:
truncations at every layer (file header, record header, record data, pcapng block, gzip stream,
link/IP/TCP headers cut by the snaplen), lying length fields in every layer and protocol (pcap
and pcapng lengths, IPv4/IPv6/TCP lengths, HTTP Content-Length and chunk sizes, HTTP/2 frame
lengths and HPACK, AMQP frame sizes and frame ends, TLS record, handshake and extension lengths),
floods (SYNs, tiny out-of-order segments, duplicates), clock jumps, a gzip bomb, hostile
strings in every field that reaches an output (terminal escapes, markup brackets, HTML), hostile
file names, and key logs of garbage.  ``CASES`` maps each file name to its bytes' maker.
"""

from __future__ import annotations

import gzip
import struct
import sys
from collections.abc import Callable
from pathlib import Path

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
ORIG, RESP = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
T0 = 1_700_000_000.0
ETH = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01"
#: A string for every field that reaches an output: a terminal clear and title change, rich
#: markup, live HTML, a spreadsheet formula.
HOSTILE = (
    "\x1b[2J\x1b]0;pwned\x07[/red][bold]<script>alert(1)</script>"
    "<img src=x onerror=alert(1)>=cmd|' /C calc'!A0"
)

Frames = list[tuple[float, bytes]]


# -- frames and files ----------------------------------------------------------------------------


def tcp_frame(
    d: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    *,
    port: int = 80,
    ipv6: bool = False,
) -> bytes:
    src, dst = (ORIG, RESP) if d == 0 else (RESP, ORIG)
    sport, dport = (40000, port) if d == 0 else (port, 40000)
    tcp = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 65535, 0, 0
    )
    tcp += payload
    if ipv6:
        six = (
            b"\x20\x01\x0d\xb8" + b"\0" * 11 + bytes([1 + d]),
            b"\x20\x01\x0d\xb8" + b"\0" * 11 + bytes([2 - d]),
        )
        return (
            ETH
            + b"\x86\xdd"
            + struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64)
            + six[0]
            + six[1]
            + tcp
        )
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
    return ETH + b"\x08\x00" + ip + tcp


def pcap(frames: Frames, *, snaplen: int = 262144, ns: bool = False, lie: int = 0) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B23C4D if ns else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1)]
    for ts, frame in frames:
        sec = int(ts) & 0xFFFFFFFF
        frac = int((ts - int(ts)) * (1e9 if ns else 1e6))
        data = frame[:snaplen]
        out.append(struct.pack("<IIII", sec, frac, len(data), len(frame) + lie) + data)
    return b"".join(out)


def block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def pcapng(frames: Frames, *extra: bytes) -> bytes:
    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack("<HHI", 1, 0, 0))
    epbs = []
    for ts, frame in frames:
        ticks = int(ts * 1e6)
        epbs.append(
            block(
                6,
                struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
                + frame,
            )
        )
    return shb + idb + b"".join(extra) + b"".join(epbs)


class Conv:
    """A TCP conversation: handshake, steps each way with ACKs, and an optional close."""

    def __init__(self, port: int = 80, *, ipv6: bool = False) -> None:
        self.port, self.ipv6 = port, ipv6
        self.seq = [1000, 5000]
        self.ts = T0
        self.frames: Frames = []

    def emit(self, d: int, flags: int, payload: bytes = b"", seq: int | None = None) -> Conv:
        self.ts += 0.001
        frame = tcp_frame(
            d,
            self.seq[d] if seq is None else seq,
            self.seq[1 - d],
            flags,
            payload,
            port=self.port,
            ipv6=self.ipv6,
        )
        self.frames.append((self.ts, frame))
        return self

    def open(self) -> Conv:
        self.emit(0, SYN)
        self.seq[0] += 1
        self.emit(1, SYN | ACK)
        self.seq[1] += 1
        return self.emit(0, ACK)

    def send(self, d: int, data: bytes, mss: int = 1400) -> Conv:
        for i in range(0, len(data), mss):
            self.emit(d, ACK | PSH, data[i : i + mss])
            self.seq[d] += len(data[i : i + mss])
        return self.emit(1 - d, ACK)

    def close(self) -> Conv:
        self.emit(0, FIN | ACK)
        self.seq[0] += 1
        self.emit(1, FIN | ACK)
        self.seq[1] += 1
        return self.emit(0, ACK)


def talk(port: int, *steps: tuple[int, bytes], close: bool = True) -> bytes:
    conv = Conv(port).open()
    for d, data in steps:
        conv.send(d, data)
    if close:
        conv.close()
    return pcap(conv.frames)


# -- application bytes ---------------------------------------------------------------------------

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


def h2_frame(
    ftype: int, flags: int, stream: int, payload: bytes, *, length: int | None = None
) -> bytes:
    size = len(payload) if length is None else length
    return struct.pack("!I", size)[1:] + bytes([ftype, flags]) + struct.pack("!I", stream) + payload


def amqp_frame(
    ftype: int, channel: int, payload: bytes, *, size: int | None = None, end: int = 0xCE
) -> bytes:
    return (
        struct.pack("!BHI", ftype, channel, len(payload) if size is None else size)
        + payload
        + bytes([end])
    )


def tls_record(ctype: int, body: bytes, *, length: int | None = None) -> bytes:
    return struct.pack("!BHH", ctype, 0x0303, len(body) if length is None else length) + body


def client_hello(
    *, sni: bytes = b"example.com", alpn: bytes = b"h2", ext_lie: int = 0, hs_lie: int = 0
) -> bytes:
    server_name = struct.pack("!HBH", len(sni) + 3, 0, len(sni)) + sni
    alpn_list = struct.pack("!HB", len(alpn) + 1, len(alpn)) + alpn
    exts = struct.pack("!HH", 0, len(server_name)) + server_name
    exts += struct.pack("!HH", 16, len(alpn_list)) + alpn_list
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += struct.pack("!H", len(exts) + ext_lie) + exts
    return tls_record(22, b"\x01" + struct.pack("!I", len(body) + hs_lie)[1:] + body)


def server_hello(alpn: bytes) -> bytes:
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\xc0\x2f" + b"\x00"
    alpn_list = struct.pack("!HB", len(alpn) + 1, len(alpn)) + alpn
    exts = struct.pack("!HH", 16, len(alpn_list)) + alpn_list
    body += struct.pack("!H", len(exts)) + exts
    return tls_record(22, b"\x02" + struct.pack("!I", len(body))[1:] + body)


# -- the cases ------------------------------------------------------------------------------------


def _good() -> bytes:
    return talk(80, (0, GET), (1, OK))


def _cut(data: bytes, at: int) -> Callable[[], bytes]:
    return lambda: data[:at]


def _flood_syns() -> bytes:
    frames = []
    for i in range(3000):
        src = bytes([198, 18, 1 + (i >> 8), i & 0xFF])
        frame = tcp_frame(0, i * 7919, 0, SYN)
        frames.append((T0 + i * 1e-4, frame[:26] + src + frame[30:]))
    return pcap(frames)


def _flood_out_of_order() -> bytes:
    conv = Conv(80).open()
    base = conv.seq[0]
    for i in range(6000, 0, -1):  # tiny segments, last first: all wait for the first
        conv.emit(0, ACK | PSH, b"x", seq=base + i)
    return pcap(conv.frames)


def _flood_duplicates() -> bytes:
    conv = Conv(80).open()
    for _ in range(3000):
        conv.emit(0, ACK | PSH, GET)
    return pcap(conv.frames)


def _clock(offsets: list[float]) -> bytes:
    conv = Conv(80).open().send(0, GET).send(1, OK).close()
    frames = [(ts + offsets[i % len(offsets)], f) for i, (ts, f) in enumerate(conv.frames)]
    return pcap(frames)


def _clock_extremes() -> bytes:
    conv = Conv(80).open().send(0, GET).send(1, OK).close()
    stamps = [0.0, 4294967295.999, 1.0, T0, 0.5, 4294967295.0, T0 - 86400, T0 + 86400 * 365]
    return pcap([(stamps[i % len(stamps)], f) for i, (_, f) in enumerate(conv.frames)], ns=True)


def _ip_lies() -> bytes:
    frames = []
    base = tcp_frame(0, 1, 0, ACK | PSH, b"payload")
    for total in (0, 10, 19, 20, 39, 41, 0xFFFF):
        frames.append((T0, base[:16] + struct.pack("!H", total) + base[18:]))
    for ihl in (0, 3, 4, 6, 15):
        frames.append((T0, base[:14] + bytes([0x40 | ihl]) + base[15:]))
    for doff in (0, 2, 4, 6, 15):
        frames.append((T0, base[:46] + bytes([doff << 4]) + base[47:]))
    frames.append((T0, base[:20] + b"\x20\x00" + base[22:]))  # a fragment (more fragments)
    six = tcp_frame(0, 1, 0, ACK | PSH, b"payload", ipv6=True)
    for plen in (0, 1, 19, 0xFFFF):
        frames.append((T0, six[:18] + struct.pack("!H", plen) + six[20:]))
    frames.append((T0, six[:20] + b"\x00" + six[21:]))  # hop-by-hop header claimed, none there
    vlan = ETH + b"\x81\x00\x00\x01" * 40 + b"\x08\x00" + base[14:]
    frames.append((T0, vlan))
    return pcap(frames)


def _snaplen_cuts() -> bytes:
    conv = Conv(80).open().send(0, GET).send(1, OK).close()
    frames = []
    for cut in (0, 1, 13, 14, 15, 33, 34, 35, 53, 54, 55):
        frames += [(ts, f[:cut] if len(f) > cut else f) for ts, f in conv.frames[:4]]
    return pcap(frames, lie=0)


def _pcap_record_lies() -> bytes:
    good = _good()
    return good[:24] + struct.pack("<IIII", 1, 0, 0x7FFFFFFF, 0x7FFFFFFF) + good[40:]


def _pcapng_lies() -> bytes:
    frames = Conv(80).open().send(0, GET).frames
    bad_epb = struct.pack("<II", 6, 0xFFFFFFF0) + b"\0" * 40
    return pcapng(frames) + bad_epb


def _pcapng_options() -> bytes:
    idb = block(
        1,
        struct.pack("<HHI", 1, 0, 0)
        + struct.pack("<HH", 9, 1)
        + b"\x7f\0\0\0"
        + struct.pack("<HH", 14, 0xFFF0),
    )
    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    frame = tcp_frame(0, 1, 0, SYN)
    epb = block(6, struct.pack("<IIIII", 0, 0xFFFFFFFF, 0xFFFFFFFF, len(frame), len(frame)) + frame)
    epb_iface = block(6, struct.pack("<IIIII", 7, 0, 0, len(frame), len(frame)) + frame)
    return (
        shb + idb + epb + epb_iface + block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 2, 0, -1))
    )


def _dsb_garbage() -> bytes:
    frames = Conv(443).open().send(0, client_hello()).frames
    dsb = block(
        10,
        struct.pack("<II", 0x544C534B, 40)
        + b"\x0b\x0c\x1c\x00\x01CLIENT_RANDOM zz\n"
        + b"\xff" * 18,
    )
    dsb_lie = block(10, struct.pack("<II", 0x544C534B, 0xFFFFFF) + b"x" * 8)
    return pcapng(frames, dsb, dsb_lie)


def _gzip_bomb() -> bytes:
    out = gzip.compress(pcap([]) + b"\0" * (16 << 20), 9)
    return out


CASES: dict[str, Callable[[], bytes]] = {
    # truncations at every layer of the file
    **{f"cut-{n}.pcap": _cut(_good(), n) for n in (1, 3, 4, 23, 24, 30, 40, 80, 150)},
    "cut-pcapng-block.pcapng": lambda: pcapng(Conv(80).open().send(0, GET).frames)[:-7],
    "cut-gzip.pcap.gz": lambda: gzip.compress(_good())[:-12],
    "cut-gzip-header.pcap.gz": lambda: gzip.compress(_good())[:6],
    "gzip-trailing-garbage.pcap.gz": lambda: gzip.compress(_good()) + b"PK\x03\x04 not gzip",
    "gzip-of-gzip.pcap.gz": lambda: gzip.compress(gzip.compress(_good())),
    "gzip-bomb.pcap.gz": _gzip_bomb,
    "snaplen-cuts.pcap": _snaplen_cuts,
    # lying lengths: capture, link, IP, TCP
    "pcap-record-huge.pcap": _pcap_record_lies,
    "pcap-incl-over-orig.pcap": lambda: (
        _good()[:24] + struct.pack("<IIII", 1, 0, 60, 10) + _good()[40:]
    ),
    "pcapng-block-lies.pcapng": _pcapng_lies,
    "pcapng-options.pcapng": _pcapng_options,
    "pcapng-dsb-garbage.pcapng": _dsb_garbage,
    "ip-tcp-lengths.pcap": _ip_lies,
    # lying lengths: HTTP/1.1
    "http1-content-length-huge.pcap": lambda: talk(
        80, (0, b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\nab")
    ),
    "http1-content-length-negative.pcap": lambda: talk(
        80, (0, b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\nab"), (1, OK)
    ),
    "http1-content-length-twice.pcap": lambda: talk(
        80, (0, b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 900\r\n\r\nab"), (1, OK)
    ),
    "http1-chunk-huge.pcap": lambda: talk(
        80,
        (0, GET),
        (1, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nab"),
    ),
    "http1-chunk-garbage.pcap": lambda: talk(
        80,
        (0, GET),
        (1, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\x00\x1b[2J;;\r\n\r\n"),
    ),
    "http1-header-flood.pcap": lambda: talk(
        80, (0, b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 200_000 + b"\r\n\r\n")
    ),
    "http1-hostile-strings.pcap": lambda: talk(
        80,
        (0, f"GET /{HOSTILE} HTTP/1.1\r\nHost: {HOSTILE}\r\n\r\n".encode("latin-1")),
        (1, f"HTTP/1.1 200 {HOSTILE}\r\nContent-Length: 0\r\n\r\n".encode("latin-1")),
    ),
    "http1-many-pipelined.pcap": lambda: talk(80, (0, GET * 6000)),
    # lying lengths: HTTP/2
    "http2-frame-huge.pcap": lambda: talk(
        80, (0, PREFACE + h2_frame(4, 0, 0, b"") + h2_frame(1, 4, 1, b"\x82", length=0xFFFFFF))
    ),
    "http2-settings-odd.pcap": lambda: talk(
        80,
        (0, PREFACE + h2_frame(4, 0, 0, b"\0" * 7)),
        (1, h2_frame(4, 0, 0, b"") + h2_frame(7, 0, 0, b"\0")),
    ),
    "http2-hpack-garbage.pcap": lambda: talk(
        80,
        (
            0,
            PREFACE
            + h2_frame(4, 0, 0, b"")
            + h2_frame(1, 5, 1, b"\xff" * 40 + b"\x3f\xe1\xff\xff\xff\x0f"),
        ),
    ),
    "http2-continuation-alone.pcap": lambda: talk(
        80,
        (
            0,
            PREFACE
            + h2_frame(9, 4, 3, b"\x82")
            + h2_frame(0, 1, 0, b"x", length=1)
            + h2_frame(1, 0x28, 5, b"\xff\x00\x00\x00\x00"),
        ),
    ),
    "http2-hostile-strings.pcap": lambda: talk(
        80,
        (
            0,
            PREFACE
            + h2_frame(4, 0, 0, b"")
            + h2_frame(
                1,
                5,
                1,
                b"\x00\x07:method" + bytes([len(HOSTILE[:120])]) + HOSTILE[:120].encode("latin-1"),
            ),
        ),
    ),
    # lying lengths: AMQP 0-9-1
    "amqp-frame-huge.pcap": lambda: talk(
        5672, (0, AMQP_HEADER + amqp_frame(1, 0, b"\x00\x0a\x00\x0b", size=0xFFFFFFFF))
    ),
    "amqp-bad-frame-end.pcap": lambda: talk(
        5672, (0, AMQP_HEADER + amqp_frame(1, 1, b"\x00\x3c\x00\x28" + b"\0" * 8, end=0x00) * 3)
    ),
    "amqp-unknown-method.pcap": lambda: talk(
        5672,
        (
            0,
            AMQP_HEADER
            + amqp_frame(1, 1, b"\xff\xff\xff\xff" + b"\0" * 20)
            + amqp_frame(2, 1, b"\x00\x3c\x00\x00" + b"\xff" * 8 + b"\xff\xff"),
        ),
    ),
    "amqp-hostile-strings.pcap": lambda: talk(
        5672,
        (
            0,
            AMQP_HEADER
            + amqp_frame(
                1,
                1,
                b"\x00\x3c\x00\x28\x00\x00"
                + bytes([120])
                + HOSTILE[:120].encode("latin-1")
                + b"\x00\x00",
            ),
        ),
    ),
    # lying lengths: TLS
    "tls-record-huge.pcap": lambda: talk(443, (0, tls_record(22, b"\x01\x00", length=0xFFFF))),
    "tls-handshake-lies.pcap": lambda: talk(443, (0, client_hello(hs_lie=0x7FFF))),
    "tls-extensions-lie.pcap": lambda: talk(
        443, (0, client_hello(ext_lie=77)), (1, tls_record(21, b"\x02\x28"))
    ),
    "tls-unknown-record.pcap": lambda: talk(
        443, (0, tls_record(99, b"\0" * 40) + tls_record(23, b"\x01" * 4000))
    ),
    "tls-hostile-strings.pcap": lambda: talk(
        443,
        (0, client_hello(sni=HOSTILE.encode("latin-1")[:200], alpn=b"[/red]\x1b[31m")),
        (1, server_hello(b"[/red]\x1b[31m")),
    ),
    # floods and clock jumps
    "flood-syns.pcap": _flood_syns,
    "flood-out-of-order.pcap": _flood_out_of_order,
    "flood-duplicates.pcap": _flood_duplicates,
    "clock-day-ahead.pcap": lambda: _clock([0, 0, 0, 86400, 0, 0]),
    "clock-day-behind.pcap": lambda: _clock([0, 0, -86400, 0, 0]),
    "clock-steps-back.pcap": lambda: _clock(
        [0, 0, 0, -86400, -86400, -86400, -86400, -86400, -86400, -86400]
    ),
    "clock-extremes.pcap": _clock_extremes,
    # hostile file names (the content is fine)
    "x[old].pcap": _good,
    "name-\x1b[2J-[red]x.pcap": _good,
    "name-<script>.pcap": _good,
}

#: Key logs for the TLS captures: garbage of every kind (``-k``).
KEYLOGS: dict[str, bytes] = {
    "garbage.keys": b"\x0b\x0c\x1c\n\x1b[2J\nCLIENT_RANDOM zz yy\n" + b"#" * 5000 + b"\n\xff\xfe\n",
}


def write_corpus(folder: Path) -> list[Path]:
    """Write every case into ``folder``; return the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in {**CASES, **{k: (lambda v=v: v) for k, v in KEYLOGS.items()}}.items():
        path = folder / name
        path.write_bytes(make())
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} DIR")
    for path in write_corpus(Path(sys.argv[1])):
        print(path)
