"""Recording a live scenario: an AF_PACKET socket on one interface, a kernel filter, a pcap.

No libpcap and no tcpdump: a ``SOCK_RAW`` packet socket (packet(7)) gets every frame of the
interface with a kernel timestamp, a classic BPF program attached to it keeps only TCP over IPv4
to or from the scenario's server port (so the Python thread sees little of the machine's other
loopback traffic), and the thread keeps the frames in memory until ``stop``.  The frame parsing
and the "is every connection closed" check are pure functions, tested without a socket.

On loopback every frame passes the tap twice, once leaving and once arriving; like libpcap
(pcap-linux.c) the outgoing copy is dropped, so the pcap has each frame once.
"""

from __future__ import annotations

import ctypes
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from analyzer.errors import UsageError

#: The interface whose frames pass the tap twice (leaving and arriving).
LOOPBACK_INTERFACE = "lo"
#: linux/if_ether.h: every protocol.
ETH_P_ALL = 0x0003
#: asm-generic/socket.h (not exported by Python's socket module).
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
#: linux/if_packet.h
SOL_PACKET = 263
PACKET_STATISTICS = 6
#: A burst of a few thousand 64 KiB loopback frames must not overflow the socket while the
#: thread is descheduled: 64 MiB holds about a thousand of the largest ones.
RECEIVE_BUFFER_BYTES = 64 * 1024 * 1024
#: Largest frame the tap hands over: loopback's 65536-byte MTU plus headers, rounded up
#: (tcpdump's default snaplen is the same 262144).
SNAPLEN = 262_144
#: How long the thread blocks in poll before it looks at the stop flag again.
POLL_INTERVAL_S = 0.02
#: After the last connection closed, how long to wait for its last FIN/ACKs to reach the tap.
SETTLE_S = 0.2
#: Give up waiting for FINs after this long (a peer that never closes is reported, not waited on).
CLOSE_TIMEOUT_S = 5.0

ETHERNET_HEADER_BYTES = 14
ETHERTYPE_IPV4 = 0x0800
IP_PROTO_TCP = 6
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10
#: pcap file header (nanosecond magic, draft-ietf-opsawg-pcap section 4) and record header.
PCAP_NANOSECOND_MAGIC = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
_PCAP_HEADER = struct.Struct("<IHHiIII")
_PCAP_RECORD = struct.Struct("<IIII")
_TIMESPEC = struct.Struct("@ll")
_PACKET_STATS = struct.Struct("@II")

#: ``tcpdump -dd 'ip and tcp port 5672'`` on an Ethernet interface, with the port at the two
#: ``jeq`` instructions marked None: ethertype IPv4, protocol TCP, not a fragment, then
#: source or destination port.
_BPF_TCP_PORT: tuple[tuple[int, int, int, int | None], ...] = (
    (0x28, 0, 0, 0x0000000C),
    (0x15, 0, 10, 0x00000800),
    (0x30, 0, 0, 0x00000017),
    (0x15, 0, 8, 0x00000006),
    (0x28, 0, 0, 0x00000014),
    (0x45, 6, 0, 0x00001FFF),
    (0xB1, 0, 0, 0x0000000E),
    (0x48, 0, 0, 0x0000000E),
    (0x15, 2, 0, None),
    (0x48, 0, 0, 0x00000010),
    (0x15, 0, 1, None),
    (0x6, 0, 0, SNAPLEN),
    (0x6, 0, 0, 0x00000000),
)

#: One captured frame: (nanoseconds since the Unix epoch, Ethernet frame, original length).
Frame = tuple[int, bytes, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpFacts:
    """The parts of a frame's IPv4/TCP headers the recorder needs."""

    src: tuple[str, int]
    dst: tuple[str, int]
    flags: int
    payload_bytes: int


def tcp_facts(frame: bytes) -> TcpFacts | None:
    """Addresses, ports and flags of an Ethernet/IPv4/TCP frame; None for anything else."""
    if len(frame) < ETHERNET_HEADER_BYTES + 20:
        return None
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    ip = ETHERNET_HEADER_BYTES
    if ethertype != ETHERTYPE_IPV4 or frame[ip + 9] != IP_PROTO_TCP:
        return None
    ihl = (frame[ip] & 0x0F) * 4
    (total,) = struct.unpack_from("!H", frame, ip + 2)
    tcp = ip + ihl
    if len(frame) < tcp + 20:
        return None
    sport, dport = struct.unpack_from("!HH", frame, tcp)
    offset = (frame[tcp + 12] >> 4) * 4
    return TcpFacts(
        src=(socket.inet_ntoa(frame[ip + 12 : ip + 16]), sport),
        dst=(socket.inet_ntoa(frame[ip + 16 : ip + 20]), dport),
        flags=frame[tcp + 13],
        payload_bytes=total - ihl - offset,
    )


def bpf_program(port: int) -> list[tuple[int, int, int, int]]:
    """The kernel filter for TCP over IPv4 to or from ``port``."""
    return [(code, jt, jf, port if k is None else k) for code, jt, jf, k in _BPF_TCP_PORT]


def open_connections(
    frames: Iterable[Frame], server_port: int, clients: set[tuple[str, int]] | None = None
) -> set[tuple[str, int]]:
    """Client endpoints of connections to ``server_port`` that have not finished closing.

    A connection is finished when it was reset, or when both sides sent a FIN and a pure ACK
    came after the second one (RFC 9293 section 3.6: the last ACK of the close).  A client of
    ``clients`` with no frame at all is not finished either: its frames are still to come.
    """
    fins: dict[tuple[str, int], set[bool]] = {client: set() for client in clients or ()}
    done: set[tuple[str, int]] = set()
    for _, frame, _ in frames:
        facts = tcp_facts(frame)
        if facts is None:
            continue
        from_client = facts.dst[1] == server_port
        client = facts.src if from_client else facts.dst
        seen = fins.setdefault(client, set())
        if facts.flags & TCP_RST or (
            len(seen) == 2 and facts.flags & TCP_ACK and facts.payload_bytes == 0
        ):
            done.add(client)
        if facts.flags & TCP_FIN:
            seen.add(from_client)
    return set(fins) - done


def keep_connections(
    frames: Iterable[Frame], server_port: int, clients: set[tuple[str, int]] | None
) -> list[Frame]:
    """Frames of the connections whose client endpoint is in ``clients`` (None: all)."""
    kept = []
    for record in frames:
        facts = tcp_facts(record[1])
        if facts is None:
            continue
        client = facts.src if facts.dst[1] == server_port else facts.dst
        if clients is None or client in clients:
            kept.append(record)
    return kept


def pcap_bytes(frames: Iterable[Frame]) -> bytes:
    """A classic pcap (nanosecond timestamps, Ethernet) of ``frames``."""
    out = [_PCAP_HEADER.pack(PCAP_NANOSECOND_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)]
    for ts_ns, frame, orig_len in frames:
        seconds, nanos = divmod(ts_ns, 1_000_000_000)
        out.append(_PCAP_RECORD.pack(seconds, nanos, len(frame), orig_len))
        out.append(frame)
    return b"".join(out)


@dataclass(slots=True)
class Recorder:
    """An AF_PACKET tap on ``interface`` keeping TCP frames to or from ``server_port``."""

    interface: str
    server_port: int
    frames: list[Frame] = field(default_factory=list)
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _error: BaseException | None = None

    def start(self) -> None:
        """Open the tap (``UsageError`` without the privilege) and start the reading thread."""
        self._sock = _open_tap(self.interface, self.server_port)
        self._thread = threading.Thread(target=self._read, name="wireprobe-tap", daemon=True)
        self._thread.start()

    def snapshot(self) -> list[Frame]:
        """The frames kept so far."""
        with self._lock:
            return list(self.frames)

    def wait_closed(
        self, clients: set[tuple[str, int]] | None, timeout_s: float = CLOSE_TIMEOUT_S
    ) -> set[tuple[str, int]]:
        """Wait until the connections of ``clients`` (None: all) closed; return the others."""
        deadline = time.monotonic() + timeout_s
        while True:
            time.sleep(SETTLE_S)
            frames = keep_connections(self.snapshot(), self.server_port, clients)
            still_open = open_connections(frames, self.server_port, clients)
            if not still_open or time.monotonic() > deadline:
                return still_open

    def stop(self) -> int:
        """Stop reading, close the tap; return the frames the kernel dropped (0 when none)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        dropped = 0
        if self._sock is not None:
            raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _PACKET_STATS.size)
            dropped = _PACKET_STATS.unpack(raw)[1]
            self._sock.close()
            self._sock = None
        if self._error is not None:
            raise RuntimeError(f"the capture thread failed: {self._error!r}") from self._error
        return dropped

    def _read(self) -> None:
        try:
            self._read_until_stopped()
        except BaseException as err:  # handed to ``stop``, which raises it in the caller
            self._error = err

    def _read_until_stopped(self) -> None:
        assert self._sock is not None
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        ancillary = socket.CMSG_SPACE(_TIMESPEC.size)
        while True:
            if not poller.poll(POLL_INTERVAL_S * 1000):
                if self._stop.is_set():
                    return  # nothing queued and asked to stop: the tail is in
                continue
            data, ancdata, _, address = self._sock.recvmsg(SNAPLEN, ancillary)
            self._keep(data, ancdata, address)

    def _keep(self, data: bytes, ancdata: list[tuple[int, int, bytes]], address: object) -> None:
        # address: (ifname, protocol, pkttype, hatype, hwaddr); see packet(7).
        outgoing = isinstance(address, tuple) and address[2] == socket.PACKET_OUTGOING
        if outgoing and self.interface == LOOPBACK_INTERFACE:
            return
        ts_ns = time.time_ns()
        for level, kind, value in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanos = _TIMESPEC.unpack(value[: _TIMESPEC.size])
                ts_ns = seconds * 1_000_000_000 + nanos
        facts = tcp_facts(data)
        if facts is None or self.server_port not in (facts.src[1], facts.dst[1]):
            return
        with self._lock:
            self.frames.append((ts_ns, data, len(data)))


def _open_tap(interface: str, port: int) -> socket.socket:
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    except PermissionError as err:
        raise UsageError(
            "no privilege to capture packets (an AF_PACKET socket needs root or CAP_NET_RAW): "
            "run as root, or give the interpreter cap_net_raw"
        ) from err
    try:
        _attach_filter(sock, bpf_program(port))
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
        except PermissionError:  # without CAP_NET_ADMIN: the sysctl's rmem_max is the cap
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        sock.bind((interface, 0))
    except OSError as err:
        sock.close()
        raise UsageError(f"cannot capture on {interface}: {err.strerror or err}") from err
    return sock


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [
        ("len", ctypes.c_uint16),
        ("filter", ctypes.POINTER(_SockFilter)),
    ]


def _attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """SO_ATTACH_FILTER (socket(7)): the kernel copies the program, so the buffers may go."""
    instructions = (_SockFilter * len(program))(*(_SockFilter(*i) for i in program))
    fprog = _SockFprog(len(program), instructions)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
    # The frames queued before the filter was attached are any traffic: the Python check in
    # ``_keep`` drops them.


def write_pcap(path: Path, frames: list[Frame]) -> None:
    """Write ``frames`` to ``path`` in time order, whole or not at all (report/output.py; the
    CLI already refused an existing file without --force)."""
    from analyzer.report.output import plan, write_all

    write_all([(plan(path, force=True), pcap_bytes(sorted(frames, key=lambda f: f[0])))])
