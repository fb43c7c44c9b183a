"""What a capture reader yields and counts, whatever the format: the packet tuple, the bound on
one record, the anomaly names and one file's ``CaptureStats``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from analyzer.capture.sources import (
    BAD_GZIP,
    GZIP_BOMB,
    GZIP_TRAILING,
    READ_ERROR,
    TRUNCATED,
    Source,
)

#: One packet as the pipeline sees it: (ts seconds, link type, original length on the wire,
#: captured bytes).  A plain tuple: it is the only object made per packet.
RawPacket = tuple[float, int, int, bytes]

#: ``on_secrets(secrets_type, data)``, called for each pcapng Decryption Secrets Block; it may
#: return the name of an anomaly its content showed (counted in the file's ``CaptureStats``).
SecretsCallback = Callable[[int, bytes], str | None]


#: Largest pcap record or pcapng block accepted, in bytes.  Ethernet-family frames stay under
#: 256 KiB (Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD, which already covers GRO/TSO super-frames);
#: a few link types (D-Bus, USB) legitimately go higher, so the bound leaves room for them while a
#: corrupt length field claiming gigabytes is refused before anything is allocated.
MAX_RECORD_BYTES: Final = 16 << 20


#: Secrets type of a TLS key log (SSLKEYLOGFILE text) in a Decryption Secrets Block: "TLSK".
SECRETS_TLS_KEY_LOG: Final = 0x544C534B

# Anomaly names (DESIGN.md habit 4: stable, because baselines and users' scripts read them).
BAD_RECORD: Final = "capture.bad_record"  # captured length > original length, or absurd
BAD_BLOCK: Final = "pcapng.bad_block"  # block framing or a length inside a block is wrong
UNKNOWN_BLOCK: Final = "pcapng.unknown_block"  # a block type this reader does not know (skipped)
BAD_INTERFACE: Final = "pcapng.bad_interface"  # a packet names an interface never described
BAD_OPTION: Final = "pcapng.bad_option"  # interface options overrun their block (defaults kept)
UNSUPPORTED_VERSION: Final = "pcapng.unsupported_version"  # a section's major version is not 1
ANOMALIES: Final = (
    TRUNCATED,
    BAD_RECORD,
    READ_ERROR,
    BAD_GZIP,
    GZIP_BOMB,
    GZIP_TRAILING,
    BAD_BLOCK,
    UNKNOWN_BLOCK,
    BAD_INTERFACE,
    BAD_OPTION,
    UNSUPPORTED_VERSION,
)


@dataclass(slots=True)
class CaptureStats:
    """What was read from one input file; filled while its packets are read."""

    path: str  # the path as given ("-" for standard input)
    packets: int = 0  # packets delivered
    wire_bytes: int = 0  # sum of their original lengths (bytes on the wire)
    link_types: list[int] = field(default_factory=list)  # declared link types, first-seen order
    first_ts: float | None = None  # earliest packet timestamp (s); None without packets
    last_ts: float | None = None  # latest packet timestamp (s); None without packets
    anomalies: dict[str, int] = field(default_factory=dict)  # anomaly name -> count


def count(stats: CaptureStats, anomaly: str) -> None:
    stats.anomalies[anomaly] = stats.anomalies.get(anomaly, 0) + 1


def end_of_data(src: Source, stats: CaptureStats) -> None:
    """Name why the data ended: a read/gzip error, a record cut short, or nothing (clean end)."""
    if src.error is not None:
        count(stats, src.error)
    elif src.leftover():
        count(stats, TRUNCATED)


def store_totals(stats: CaptureStats, n: int, wire: int, lo: float, hi: float) -> None:
    stats.packets = n
    stats.wire_bytes = wire
    if n:
        stats.first_ts, stats.last_ts = lo, hi
