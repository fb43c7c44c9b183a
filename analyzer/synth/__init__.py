"""Synthetic traffic with known ground truth (``wireprobe generate``, issue 5).

Real protocol machinery on both ends in memory (h11, h2, pamqp, ``ssl`` over memory BIOs), a
network model that lays the bytes into TCP segments (``tcp.py``), a pcap writer, and the ground
truth computed from the label of every byte (``truth.py``)::

    generated = generate(Scenario(protocol="http2", tls="1.3", messages=32, concurrency=8))
    generated.write("h2.pcap", "h2.keys", "h2.truth.json")

``wireprobe generate`` maps its options one to one onto ``Scenario`` fields (``--per-connection``
-> ``per_connection``, ``--amqp-mode`` -> ``amqp_mode``, ``--rtt-ms`` -> ``rtt_ms``, and so on, with
``--reorder`` for reordering); ``from_options(preset, **options)`` applies a ``--preset`` and the
options given (None: not given) and validates; ``-o``, ``--keylog`` and ``--truth`` are the paths
of ``Generated.write``.
"""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from analyzer.synth import amqp, http1, http2, mqtt, tlswrap, websocket
from analyzer.synth.conversation import Conversation
from analyzer.synth.pcapwriter import LINKTYPE_ETHERNET, Endpoints, frame, pcap_bytes, unix_ts
from analyzer.synth.scenario import PRESETS, Scenario, from_options, preset
from analyzer.synth.tcp import IP_TCP_HEADER_BYTES, Laid, lay_out
from analyzer.synth.truth import ConnectionFacts, connection_truth, summary

__all__ = ["PRESETS", "Generated", "Scenario", "from_options", "generate", "preset"]

TRUTH_SCHEMA = "wireprobe.truth/1"
#: RFC 5737-adjacent benchmark range (RFC 2544: 198.18.0.0/15) keeps generated traffic apart
#: from any real network.
ORIG_IP = bytes([198, 18, 0, 1])
RESP_IP = bytes([198, 19, 0, 1])
#: IANA's dynamic port range (RFC 6335 section 6) for the client side.
FIRST_CLIENT_PORT = 49152
CLIENT_PORTS = 16384
#: Well-known ports of each protocol, cleartext and over TLS.
SERVER_PORTS = {
    ("http1", False): 80,
    ("http2", False): 80,
    ("amqp", False): 5672,
    ("http1", True): 443,
    ("http2", True): 443,
    ("amqp", True): 5671,
    ("mqtt", False): 1883,
    ("mqtt", True): 8883,
    ("websocket", False): 80,
    ("websocket", True): 443,
}
#: Pause between one connection's last packet and the next connection's SYN.
CONNECTION_GAP_US = 1_000


@dataclass(frozen=True, slots=True)
class Generated:
    """The capture, its key log and its ground truth."""

    scenario: Scenario
    #: (microseconds since ``EPOCH_S``, Ethernet frame) in capture order
    frames: tuple[tuple[int, bytes], ...]
    truth: dict[str, object]
    #: NSS key log of the TLS sessions (None without TLS)
    keylog: str | None

    @property
    def packets(self) -> list[tuple[float, bytes]]:
        """(Unix timestamp, frame) in capture order."""
        return [(unix_ts(ts_us), data) for ts_us, data in self.frames]

    def pcap(self) -> bytes:
        """The capture as a classic pcap file."""
        return pcap_bytes(list(self.frames))

    def write(
        self,
        path_pcap: str | Path,
        path_keylog: str | Path | None = None,
        path_truth: str | Path | None = None,
    ) -> None:
        """Write the pcap, and the key log and truth JSON when paths are given."""
        Path(path_pcap).write_bytes(self.pcap())
        if path_keylog is not None:
            Path(path_keylog).write_text(self.keylog or "")
        if path_truth is not None:
            Path(path_truth).write_text(json.dumps(self.truth, indent=2, sort_keys=True) + "\n")


def generate(scenario: Scenario) -> Generated:
    """Run the scenario; ``UsageError`` for a bad one."""
    scenario.validate()
    with tempfile.TemporaryDirectory(prefix="wireprobe-synth-") as workdir:
        return _Run(scenario, Path(workdir)).run()


class _Run:
    """One generation: the connections one after another."""

    def __init__(self, scenario: Scenario, workdir: Path) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.payload = self.rng.randbytes(scenario.payload)
        self.endpoints: tlswrap.Endpoints | None = None
        if scenario.tls != "off":
            alpn = {"http1": "http/1.1", "http2": "h2"}.get(scenario.protocol)
            self.endpoints = tlswrap.make_endpoints(scenario.tls, scenario.seed, alpn, workdir)
        self.frames: list[tuple[int, bytes]] = []
        self.connections: list[dict[str, object]] = []
        self.messages: list[dict[str, object]] = []

    def run(self) -> Generated:
        s = self.scenario
        start_us = 0
        per = s.messages_per_connection
        for index, first in enumerate(range(0, s.messages, per)):
            laid = self._connection(index, min(per, s.messages - first), start_us)
            start_us = laid.end_us + CONNECTION_GAP_US
        keylog = None
        if self.endpoints is not None and self.endpoints.keylog_path.exists():
            keylog = self.endpoints.keylog_path.read_text()
        truth: dict[str, object] = {
            "schema": TRUTH_SCHEMA,
            "scenario": asdict(s),
            "capture": {
                "packets": len(self.frames),
                "wire_bytes": sum(len(data) for _, data in self.frames),
                "link_type": LINKTYPE_ETHERNET,
                "first_ts": unix_ts(self.frames[0][0]),
                "last_ts": unix_ts(self.frames[-1][0]),
                "anomalies": [],
            },
            "connections": self.connections,
            "messages": self.messages,
            "summary": summary(self.connections, self.messages),
        }
        return Generated(scenario=s, frames=tuple(self.frames), truth=truth, keylog=keylog)

    def _connection(self, index: int, n_messages: int, start_us: int) -> Laid:
        s = self.scenario
        conv = _conversation(s, n_messages, self.payload)
        tls_facts = None
        if self.endpoints is not None:
            conv, tls_facts = tlswrap.wrap(conv, self.endpoints, s.resume)
        laid = lay_out(
            conv.flights,
            start_us=start_us,
            rtt_us=max(2, round(s.rtt_ms * 1000)),
            mtu=s.mtu,
            loss=s.loss,
            rng=self.rng,
            reorder=s.reorder,
        )
        ends = Endpoints(
            orig_ip=ORIG_IP,
            resp_ip=RESP_IP,
            orig_port=FIRST_CLIENT_PORT + index % CLIENT_PORTS,
            resp_port=SERVER_PORTS[s.protocol, s.tls != "off"],
            isn=(self.rng.getrandbits(32), self.rng.getrandbits(32)),
        )
        facts = ConnectionFacts(
            orig=f"{_dotted(ORIG_IP)}:{ends.orig_port}",
            resp=f"{_dotted(RESP_IP)}:{ends.resp_port}",
            protocol=conv.protocol,
            messages=conv.messages,
            tls=tls_facts,
            first_ordinal=len(self.frames) + 1,
        )
        record, messages = connection_truth(index, laid, facts)
        self.connections.append(record)
        self.messages.extend(messages)
        ip_ids = [self.rng.getrandbits(16), self.rng.getrandbits(16)]
        mss = s.mtu - IP_TCP_HEADER_BYTES
        for segment in laid.segments:
            ip_ids[segment.direction] += 1
            self.frames.append(
                (segment.ts_us, frame(segment, ends, ip_ids[segment.direction], mss))
            )
        return laid


def _conversation(s: Scenario, n_messages: int, payload: bytes) -> Conversation:
    if s.protocol == "http1":
        return http1.conversation(n_messages, payload, s.concurrency, s.http_status)
    if s.protocol == "http2":
        return http2.conversation(n_messages, payload, s.concurrency, s.http_status)
    if s.protocol == "websocket":
        return websocket.conversation(n_messages, payload)
    if s.protocol == "mqtt":
        return mqtt.conversation(n_messages, payload, 1 if s.mqtt_qos is None else s.mqtt_qos)
    return amqp.conversation(n_messages, payload, s.mode, s.amqp_properties, s.seed)


def _dotted(address: bytes) -> str:
    return ".".join(str(octet) for octet in address)
