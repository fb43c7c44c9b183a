"""Options that travel from the CLI into the stages (never module-level settings)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from analyzer.tcp.budget import MAX_OPEN_CONNECTIONS

if TYPE_CHECKING:
    from analyzer.filters import Filter
    from analyzer.tls.keylog import KeyLog

#: Seconds of capture time after which a connection with no packet is finalised.  Zeek's
#: tcp_inactivity_timeout is 5 minutes; long-polling clients rarely stay silent longer.
IDLE_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodeOptions:
    """What every decoder may consult."""

    #: TLS secrets from --keylog files and pcapng Decryption Secrets Blocks (filled while reading)
    keylog: KeyLog | None = None
    #: port -> protocol name, from --port PROTO=PORT; overrides content detection for that port
    port_overrides: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalyzeOptions:
    """Options of one ``wireprobe analyze`` run."""

    decode: DecodeOptions = field(default_factory=DecodeOptions)
    idle_timeout_s: float = IDLE_TIMEOUT_S
    #: skip application decoding: link/IP/TCP figures only, every payload byte ``undecoded``
    #: (the job ``tshark -z conv,tcp`` does, for captures too big to decode)
    transport_only: bool = False
    #: take the fused per-packet fast path for common segments (False: the general path only;
    #: tests compare the two, which must give identical results)
    fast_path: bool = True
    #: ``--filter``: only the connections it keeps are analysed further (reported, summarised)
    select: Filter | None = None
    #: connections open at once before the longest idle are evicted (analyzer/tcp/budget.py)
    max_open_connections: int = MAX_OPEN_CONNECTIONS
