"""Real TLS 1.2/1.3 between an ``ssl`` client and server over memory BIOs.

The handshake bytes are setup (DESIGN.md section 2).  Application chunks are written one
``SSLObject.write`` per write group (a chunk and the chunks ``joined`` to it: a whole HTTP/2 flight,
an HTTP/1.1 request, an AMQP message's frames), so the records of a write carry exactly its bytes:
the plaintext keeps each chunk's label, and the record header and expansion (explicit nonce, AEAD
tag, TLS 1.3 inner content type) are TLS-layer bytes split among the owners of the record's
plaintext in proportion to their bytes (DESIGN.md section 3).  close_notify is teardown.

TLS 1.3 NewSessionTickets (sent by the server once it has the client's Finished) are setup bytes
at the head of the server's first application flight, and the client's Finished goes out with its
first application flight, as real stacks send them.

The server certificate is an Ed25519 one derived from the seed: Ed25519 signatures are
deterministic and fixed-size, so handshake sizes do not vary from run to run.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from analyzer.accounting.apportion import apportion
from analyzer.decoding.events import ORIG, RESP, SETUP, TEARDOWN, TLS
from analyzer.synth.conversation import Chunk, Conversation, Flight

SNI = "synth.wireprobe.test"
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
RECORD_HEADER_BYTES = 5
#: RFC 8446 section 5.1 / RFC 5246 section 6.2.1: the most plaintext one record carries.
MAX_RECORD_PLAINTEXT_BYTES = 16384
#: IANA numbers (RFC 8446 B.4, RFC 8422 6, RFC 7905) of the suites OpenSSL can pick with an
#: Ed25519 certificate, keyed by OpenSSL's name for them.
CIPHER_SUITE_IDS = {
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
    "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C,
    "ECDHE-ECDSA-CHACHA20-POLY1305": 0xCCA9,
    "ECDHE-ECDSA-AES128-SHA256": 0xC023,
    "ECDHE-ECDSA-AES256-SHA384": 0xC024,
}
#: Handshake flights before the generator gives up (a full TLS 1.2 handshake takes 4).
MAX_HANDSHAKE_FLIGHTS = 16
#: Bytes asked of ``SSLObject.read`` at a time.
READ_BYTES = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFacts:
    """What the truth reports about one connection's handshake."""

    version: str
    resumed: bool
    alpn: str | None
    sni: str
    #: IANA cipher suite number (None for a suite missing from ``CIPHER_SUITE_IDS``)
    cipher_suite: int | None


@dataclass(slots=True)
class Endpoints:
    """Client and server contexts shared by every connection of one run (tickets need that)."""

    client: ssl.SSLContext
    server: ssl.SSLContext
    keylog_path: Path
    session: ssl.SSLSession | None = None


def make_endpoints(version: str, seed: int, alpn: str | None, workdir: Path) -> Endpoints:
    """Contexts pinned to ``version``; the client writes its key log under ``workdir``."""
    cert_path, key_path = write_certificate(seed, workdir)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    server.set_alpn_protocols(["h2", "http/1.1"])
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    if alpn:
        client.set_alpn_protocols([alpn])
    for context in (server, client):
        context.minimum_version = context.maximum_version = VERSIONS[version]
    keylog_path = workdir / "keys.log"
    client.keylog_filename = str(keylog_path)
    return Endpoints(client=client, server=server, keylog_path=keylog_path)


def write_certificate(seed: int, workdir: Path) -> tuple[Path, Path]:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"wireprobe-synth-key:%d" % seed).digest()
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SNI)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2035, 1, 1, tzinfo=datetime.UTC))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SNI)]), critical=False)
        .sign(key, None)
    )
    cert_path, key_path = workdir / "server.crt", workdir / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass(slots=True)
class _Side:
    obj: ssl.SSLObject
    incoming: ssl.MemoryBIO
    outgoing: ssl.MemoryBIO
    done: bool = False
    #: encrypted bytes to put at the head of this side's next flight
    carry: list[Chunk] = field(default_factory=list)


def wrap(conv: Conversation, endpoints: Endpoints, resume: bool) -> tuple[Conversation, TlsFacts]:
    """The conversation as it goes on the wire over TLS, and the handshake's facts."""
    session = endpoints.session if resume else None
    sides = _connect(endpoints, session)
    flights = _handshake(sides)
    shift = len(flights)
    for flight in conv.flights:
        flights.append(_encrypt_flight(flight, sides, shift))
    flights += _close(sides)
    client = sides[ORIG].obj
    facts = TlsFacts(
        version=_version_name(client.version()),
        resumed=client.session_reused,
        alpn=client.selected_alpn_protocol(),
        sni=SNI,
        cipher_suite=CIPHER_SUITE_IDS.get((client.cipher() or ("",))[0]),
    )
    endpoints.session = client.session
    wrapped = Conversation(
        protocol=conv.protocol, flights=tuple(flights), messages=conv.messages, alpn=conv.alpn
    )
    return wrapped, facts


def _connect(endpoints: Endpoints, session: ssl.SSLSession | None) -> tuple[_Side, _Side]:
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = endpoints.client.wrap_bio(
        c_in, c_out, server_side=False, server_hostname=SNI, session=session
    )
    server = endpoints.server.wrap_bio(s_in, s_out, server_side=True)
    return _Side(client, c_in, c_out), _Side(server, s_in, s_out)


def _handshake(sides: tuple[_Side, _Side]) -> list[Flight]:
    """Handshake flights; the client's last flight and the server's tickets are carried over."""
    flights: list[Flight] = []
    for _ in range(MAX_HANDSHAKE_FLIGHTS):
        for direction in (ORIG, RESP):
            side = sides[direction]
            if not side.done:
                try:
                    side.obj.do_handshake()
                    side.done = True
                except ssl.SSLWantReadError:
                    pass
            data = side.outgoing.read()
            if not data:
                continue
            sides[1 - direction].incoming.write(data)
            chunk = Chunk(data=data, owner=SETUP, layer=TLS)
            if direction == ORIG and side.done:
                side.carry.append(chunk)  # Finished goes with the first request
            elif direction == RESP and sides[ORIG].done:
                side.carry.append(chunk)  # post-handshake tickets
            else:
                flights.append(Flight(direction=direction, chunks=(chunk,)))
        if sides[ORIG].done and sides[RESP].done:
            return flights
    raise AssertionError("TLS handshake did not finish")


def _encrypt_flight(flight: Flight, sides: tuple[_Side, _Side], shift: int) -> Flight:
    side, peer = sides[flight.direction], sides[1 - flight.direction]
    # Carried chunks were handed to the peer when they were made (the handshake needed them).
    chunks, side.carry = side.carry, []
    prefix = _explicit_nonce_bytes(side.obj)
    for write in _writes(flight.chunks):
        side.obj.write(b"".join(c.data for c in write))
        records = side.outgoing.read()
        peer.incoming.write(records)
        chunks += _records(records, write, prefix)
    plaintext = _drain(peer)
    expected = b"".join(c.data for c in flight.chunks)
    if plaintext != expected:
        raise AssertionError("TLS peer read something else than was written")
    pending = peer.outgoing.read()
    if pending:
        side.incoming.write(pending)
        peer.carry.append(Chunk(data=pending, owner=SETUP, layer=TLS))
    reacts_to = None if flight.reacts_to is None else flight.reacts_to + shift
    return Flight(direction=flight.direction, chunks=tuple(chunks), reacts_to=reacts_to)


def _writes(chunks: tuple[Chunk, ...]) -> list[list[Chunk]]:
    """Group chunks into write calls: one per chunk, unless a chunk is joined to the previous."""
    writes: list[list[Chunk]] = []
    for chunk in chunks:
        if not chunk.data:
            continue
        if chunk.joined and writes:
            writes[-1].append(chunk)
        else:
            writes.append([chunk])
    return writes


def _explicit_nonce_bytes(obj: ssl.SSLObject) -> int:
    """RFC 5288 section 3: TLS 1.2 GCM records start with an 8-byte explicit nonce."""
    cipher = obj.cipher()
    return 8 if obj.version() == "TLSv1.2" and cipher and "GCM" in cipher[0] else 0


def _records(data: bytes, write: list[Chunk], prefix: int) -> list[Chunk]:
    """Label the records one write produced (RFC 8446 section 5.2, RFC 5246 section 6.2.3).

    A record is ``header | explicit nonce | plaintext | tag ...``: the plaintext keeps its chunks'
    labels; the header, nonce and the rest are TLS bytes split among the plaintext's owners in
    proportion to their bytes in the record (``apportion``, owners in order of appearance),
    laid out in that order over the header-and-nonce range and then the trailing range.
    """
    plain = _Plaintext(write)
    out: list[Chunk] = []
    offset = 0
    while offset < len(data):
        end = offset + RECORD_HEADER_BYTES + int.from_bytes(data[offset + 3 : offset + 5], "big")
        body = offset + RECORD_HEADER_BYTES + prefix
        pieces = plain.take(min(plain.left, MAX_RECORD_PLAINTEXT_BYTES))
        size = sum(len(p.data) for p in pieces)
        overhead = _overhead(pieces, (body - offset) + (end - body - size))
        head, tail = _split_labels(overhead, body - offset)
        out += _cut(data[offset:body], head)
        out += [
            Chunk(data=data[body + a : body + a + len(p.data)], owner=p.owner, layer=p.layer)
            for a, p in zip(_offsets(pieces), pieces, strict=True)
        ]
        trailer = _cut(data[body + size : end], tail)
        marked = [p for p in pieces if p.starts or p.answers]
        if marked:
            last = trailer[-1]
            trailer[-1] = replace(
                last,
                starts=tuple(m for p in marked for m in p.starts),
                answers=tuple(m for p in marked for m in p.answers),
                mark_offset=len(last.data) - 1,
            )
        out += trailer
        offset = end
    if plain.left:
        raise AssertionError("a write produced fewer records than its plaintext needs")
    return out


@dataclass(slots=True)
class _Plaintext:
    """The chunks of one write, consumed record by record."""

    chunks: list[Chunk]
    index: int = 0
    used: int = 0

    @property
    def left(self) -> int:
        return sum(len(c.data) for c in self.chunks[self.index :]) - self.used

    def take(self, size: int) -> list[Chunk]:
        """The next ``size`` bytes as pieces of chunks (marks stay on a chunk's first piece)."""
        pieces: list[Chunk] = []
        while size > 0:
            chunk = self.chunks[self.index]
            n = min(size, len(chunk.data) - self.used)
            piece = replace(chunk, data=chunk.data[self.used : self.used + n])
            if self.used:
                piece = replace(piece, starts=(), answers=())
            pieces.append(piece)
            size -= n
            self.used += n
            if self.used == len(chunk.data):
                self.index, self.used = self.index + 1, 0
        return pieces


def _offsets(pieces: list[Chunk]) -> list[int]:
    out, at = [], 0
    for p in pieces:
        out.append(at)
        at += len(p.data)
    return out


def _overhead(pieces: list[Chunk], total: int) -> list[tuple[int, int]]:
    """(owner, TLS bytes) of a record's overhead, pro rata to the owners' plaintext bytes."""
    weights: dict[int, int] = {}
    for p in pieces:
        weights[p.owner] = weights.get(p.owner, 0) + len(p.data)
    owners = list(weights) or [SETUP]
    shares = apportion(total, [weights.get(o, 0) for o in owners])
    return list(zip(owners, shares, strict=True))


def _split_labels(
    shares: list[tuple[int, int]], first: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Lay owner shares over the first ``first`` bytes, then over the rest."""
    head: list[tuple[int, int]] = []
    tail: list[tuple[int, int]] = []
    room = first
    for owner, share in shares:
        in_head = min(share, room)
        room -= in_head
        if in_head:
            head.append((owner, in_head))
        if share - in_head:
            tail.append((owner, share - in_head))
    return head, tail


def _cut(data: bytes, labels: list[tuple[int, int]]) -> list[Chunk]:
    out, at = [], 0
    for owner, size in labels:
        out.append(Chunk(data=data[at : at + size], owner=owner, layer=TLS))
        at += size
    return out


def _drain(side: _Side) -> bytes:
    pieces = []
    while True:
        try:
            piece = side.obj.read(READ_BYTES)
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            break
        if not piece:
            break
        pieces.append(piece)
    return b"".join(pieces)


def _close(sides: tuple[_Side, _Side]) -> list[Flight]:
    """close_notify from the client, then the server's (RFC 8446 section 6.1)."""
    flights: list[Flight] = []
    for direction in (ORIG, RESP):
        side, peer = sides[direction], sides[1 - direction]
        with contextlib.suppress(ssl.SSLWantReadError):  # the client waits for the reply
            side.obj.unwrap()
        data = side.outgoing.read()
        chunks = [*side.carry, Chunk(data=data, owner=TEARDOWN, layer=TLS)]
        flights.append(Flight(direction=direction, chunks=tuple(chunks)))
        peer.incoming.write(data)
        _drain(peer)
    return flights


def _version_name(version: str | None) -> str:
    return {"TLSv1.2": "1.2", "TLSv1.3": "1.3"}.get(version or "", version or "?")
