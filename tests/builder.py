"""A conversation builder for tests: ``orig(b"...")`` / ``resp(b"...")`` steps to TCP packets.

    conv = Conversation(mss=1460)
    conv.handshake()
    conv.orig(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    conv.resp(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nhi")
    conv.close()
    path = conv.write(tmp_path / "x.pcap")

Each step becomes segments of at most ``mss`` bytes, acknowledged by the peer with a pure ACK
unless ``ack=False``; ``reorder``, ``duplicate`` and ``drop`` act on the segments of that step.
Frames are Ethernet + IPv4 + TCP (no options) unless ``ipv6=True``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def ipv4_tcp(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    *,
    ipv6: bool = False,
    window: int = 65535,
) -> bytes:
    """An Ethernet frame carrying one TCP segment (checksums left zero: tshark does not check)."""
    tcp = (
        struct.pack(
            "!HHIIBBHHH", sport, dport, seq % 2**32, ack % 2**32, 5 << 4, flags, window, 0, 0
        )
        + payload
    )
    if ipv6:
        ip = struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64) + src + dst
        ethertype = 0x86DD
    else:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
        ethertype = 0x0800
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", ethertype)
    return eth + ip + tcp


def write_pcap(
    path: Path, frames: list[tuple[float, bytes]], *, snaplen: int = 262144, link_type: int = 1
) -> Path:
    """A classic little-endian microsecond pcap."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, link_type))
        for ts, frame in frames:
            sec = int(ts)
            usec = round((ts - sec) * 1e6)
            data = frame[:snaplen]
            out.write(struct.pack("<IIII", sec, usec, len(data), len(frame)) + data)
    return path


@dataclass
class Conversation:
    """Two endpoints and their sequence numbers; steps append frames."""

    mss: int = 1460
    ipv6: bool = False
    orig_addr: bytes = bytes([198, 18, 0, 1])
    resp_addr: bytes = bytes([198, 18, 0, 2])
    orig_port: int = 40000
    resp_port: int = 8080
    isn: tuple[int, int] = (1000, 5000)
    ts: float = 1_700_000_000.0
    step_s: float = 0.001
    frames: list[tuple[float, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.ipv6:
            self.orig_addr = bytes.fromhex("20010db8000000000000000000000001")
            self.resp_addr = bytes.fromhex("20010db8000000000000000000000002")
        self.seq = [self.isn[0], self.isn[1]]

    # -- raw --------------------------------------------------------------------------------

    def _frame(self, direction: int, seq: int, flags: int, payload: bytes = b"") -> bytes:
        src, dst = (
            (self.orig_addr, self.resp_addr) if direction == 0 else (self.resp_addr, self.orig_addr)
        )
        sport, dport = (
            (self.orig_port, self.resp_port) if direction == 0 else (self.resp_port, self.orig_port)
        )
        ack = self.seq[1 - direction] if flags & ACK else 0
        return ipv4_tcp(src, dst, sport, dport, seq, ack, flags, payload, ipv6=self.ipv6)

    def emit(self, direction: int, seq: int, flags: int, payload: bytes = b"") -> None:
        self.ts += self.step_s
        self.frames.append((self.ts, self._frame(direction, seq, flags, payload)))

    # -- steps ------------------------------------------------------------------------------

    def handshake(self) -> Conversation:
        self.emit(0, self.seq[0], SYN)
        self.seq[0] += 1
        self.emit(1, self.seq[1], SYN | ACK)
        self.seq[1] += 1
        self.emit(0, self.seq[0], ACK)
        return self

    def send(
        self,
        direction: int,
        data: bytes,
        *,
        ack: bool = True,
        reorder: bool = False,
        duplicate: tuple[int, ...] = (),
        drop: tuple[int, ...] = (),
    ) -> Conversation:
        segments = []
        for i in range(0, len(data), self.mss):
            chunk = data[i : i + self.mss]
            segments.append((self.seq[direction] + i, chunk))
        self.seq[direction] += len(data)
        order = list(range(len(segments)))
        if reorder and len(order) > 1:
            order[0], order[1] = order[1], order[0]
        for index in order:
            seq, chunk = segments[index]
            if index in drop:
                continue
            self.emit(direction, seq, ACK | PSH, chunk)
            if index in duplicate:
                self.emit(direction, seq, ACK | PSH, chunk)
        if ack:
            self.emit(1 - direction, self.seq[1 - direction], ACK)
        return self

    def orig(self, data: bytes, **kw: object) -> Conversation:
        return self.send(0, data, **kw)  # type: ignore[arg-type]

    def resp(self, data: bytes, **kw: object) -> Conversation:
        return self.send(1, data, **kw)  # type: ignore[arg-type]

    def close(self, first: int = 0) -> Conversation:
        """FIN from ``first``, FIN+ACK back, last ACK."""
        self.emit(first, self.seq[first], FIN | ACK)
        self.seq[first] += 1
        self.emit(1 - first, self.seq[1 - first], FIN | ACK)
        self.seq[1 - first] += 1
        self.emit(first, self.seq[first], ACK)
        return self

    def reset(self, direction: int = 0) -> Conversation:
        self.emit(direction, self.seq[direction], RST | ACK)
        return self

    def write(self, path: Path, *, snaplen: int = 262144) -> Path:
        return write_pcap(path, self.frames, snaplen=snaplen)
