"""Decoding state: one direction's (``_Side``, with its HPACK decoder and the memos that
make a repeated header block cost a lookup), one stream's, one header block's being
assembled and one streamed body's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from hpack import Decoder as HpackDecoder

from analyzer.protocols.http2.frames import MAX_HEADER_LIST_BYTES

if TYPE_CHECKING:
    from analyzer.protocols.http2.grpc_calls import Call
from analyzer.protocols.http2.hpack_memo import Entry, entries, replay, scan

#: Characters kept of a path or authority note.
MAX_NOTE_CHARS: Final = 200
#: Decoded header blocks remembered per direction (see ``_Side.decode_block``).  Peers resend
#: the same few blocks (every field indexed once the table is warm, one octet per field); a
#: handful of short ones covers them and bounds the memory to a few KiB per direction.
MAX_CACHED_BLOCKS: Final = 32
MAX_CACHED_BLOCK_BYTES: Final = 256

#: Request pseudo-header fields (RFC 9113 section 8.3.1) noted, in this order.
REQUEST_NOTES: Final = (("method", b":method"), ("path", b":path"), ("authority", b":authority"))

#: The content-type of a gRPC request (gRPC over HTTP/2), without +format or parameters.
GRPC_CONTENT_TYPE: Final = b"application/grpc"
#: RFC 7541 section 4.1: an entry's size is its name and value octets plus 32.
HPACK_ENTRY_OVERHEAD: Final = 32

# Decoder modes of one direction.
_PREFACE, _FIRST, _FRAMES, _RESYNC = range(4)

_When = tuple[int, float]  # (ordinal, ts) of the feed that delivered a frame's first byte


class _Decoded:
    """What the decoder keeps of a decoded header block (shared when a block repeats), with
    the notes it gives made once: a repeated block then costs no text decoding."""

    __slots__ = ("grpc", "request_notes", "size", "status")

    def __init__(self, size: int, pseudo: dict[bytes, bytes], grpc: bool = False) -> None:
        """``pseudo``: the pseudo-header fields (RFC 9113 section 8.3), the last one of a
        repeated name; ``grpc``: a content-type of application/grpc (or +proto etc.)."""
        #: as a request's block, it opens a gRPC call (gRPC over HTTP/2, Requests)
        self.grpc = grpc
        #: RFC 7541 section 4.1 size of its fields: name + value octets + 32 each
        self.size = size
        #: the notes of the block as a request's: (key, text) in REQUEST_NOTES order
        self.request_notes = tuple(
            (key, _text(pseudo[name])) for key, name in REQUEST_NOTES if name in pseudo
        )
        #: the note of the block as a response's: its final status; None for none or an
        #: interim 1xx (RFC 9113 section 8.1), which is not the note
        self.status: int | str | None = None
        status = pseudo.get(b":status")
        if status is not None and not status.startswith(b"1"):
            self.status = int(status) if status.isdigit() else _text(status)


class _Stream:
    """One HTTP/2 stream, which is one message.  A plain slotted class: one is made per
    message, and a dataclass's default factories cost a call per list."""

    __slots__ = (
        "answered",
        "closed",
        "decoded",
        "encoded",
        "ended",
        "grpc",
        "kind",
        "message",
        "stream_id",
    )

    def __init__(self, stream_id: int, message: int, kind: str, ended: list[bool]) -> None:
        self.stream_id = stream_id
        #: the gRPC call the stream carries, once its request headers said so
        self.grpc: Call | None = None
        self.message = message
        #: "stream" or "push"
        self.kind = kind
        #: END_STREAM seen (or implied) from orig, resp
        self.ended = ended
        self.answered = False
        #: MessageEnded was emitted
        self.closed = False
        #: HPACK header-block octets per direction (fragments only: no frame headers,
        #: padding, priority fields or promised stream ids)
        self.encoded = [0, 0]
        #: RFC 7541 section 4.1 size of the decoded fields per direction; None once a block
        #: of that direction could not be decoded
        self.decoded: list[int | None] = [0, 0]


@dataclass(slots=True)
class _Block:
    """A header block being assembled from HEADERS/PUSH_PROMISE and CONTINUATION frames."""

    #: the stream id its CONTINUATION frames must carry (RFC 9113 section 6.10)
    stream_id: int
    #: the message it belongs to; None for a stream we no longer remember
    stream: _Stream | None
    #: request fields (HEADERS from orig, PUSH_PROMISE) rather than response fields
    request: bool
    #: the HEADERS frame carried END_STREAM, which takes effect when the block completes
    end_stream: bool
    fragments: bytearray = field(default_factory=bytearray)
    decodable: bool = True


@dataclass(slots=True)
class _Body:
    """The body of a streamed frame (DATA, extension, oversized), counted as it arrives."""

    owner: int
    frame_type: int
    flags: int
    stream: _Stream | None
    length: int
    #: body octets consumed so far (fed or skipped by a gap)
    done: int = 0
    #: body positions [payload_from, payload_to) are PAYLOAD; the rest is FRAMING
    payload_from: int = 0
    payload_to: int = 0
    #: the undecodable header block an oversized frame completes
    completes: _Block | None = None


class _Side:
    """Decoding state of one direction."""

    __slots__ = (
        "ack_seen",
        "block",
        "body",
        "buf",
        "buf_when",
        "cache",
        "cache_state",
        "consumed",
        "direction",
        "fresh",
        "hpack",
        "hpack_ok",
        "mode",
        "settings_seen",
        "skipping",
        "static",
    )

    def __init__(self, direction: int, base: int, mode: int) -> None:
        self.direction = direction
        self.mode = mode
        #: bytes not yet decoded; buf[0] is at stream offset ``consumed``
        self.buf = bytearray()
        self.consumed = base
        #: offset of the first byte of the feed being processed, and who delivered buf[0]
        self.fresh = base
        self.buf_when: _When = (0, 0.0)
        self.body: _Body | None = None
        self.block: _Block | None = None
        self.hpack = HpackDecoder(max_header_list_size=MAX_HEADER_LIST_BYTES)
        self.hpack_ok = True
        self.settings_seen = False
        self.ack_seen = False
        #: inside a resync episode whose anomaly was already recorded
        self.skipping = False
        #: header block -> its ``_Decoded``, for blocks decoded without changing the dynamic
        #: table, valid while the table is in ``cache_state`` (see ``decode_block``)
        self.cache: dict[bytes, _Decoded] = {}
        self.cache_state: tuple[object, int, int, int] = (None, -1, -1, -1)
        #: static header block -> its ``_Decoded`` and the (name, value) entries it adds to
        #: the dynamic table, in order (see ``decode_block``)
        self.static: dict[bytes, tuple[_Decoded, tuple[Entry, ...]]] = {}

    def _table_state(self) -> tuple[object, int, int, int]:
        """What an HPACK decode depends on besides the block: the dynamic table's entries and
        limits.  Entries are only ever added at the front as new tuples (kept alive here, so
        compared by identity) and evicted from the back, so the newest entry and the count
        pin the contents."""
        hpack = self.hpack
        entries = hpack.header_table.dynamic_entries
        return (
            entries[0] if entries else None,
            len(entries),
            hpack.header_table.maxsize,
            hpack.max_allowed_table_size,
        )

    def decode_block(self, block: bytes) -> _Decoded:
        """What the decoder needs of a header block's fields; raises HPACKError.

        Two memos make a repeated block cost a lookup.  A static block (``hpack_memo.scan``:
        it references no dynamic-table entry) decodes the same in any table state, so it is
        decoded once and afterwards only the entries it adds are added again, in order.  Any
        other block that leaves the dynamic table as it was (fields indexing the table, literals
        without indexing) decodes the same way again while the table stays so: remember it.
        The rest is decoded every time, in order, as HPACK requires."""
        if len(block) > MAX_CACHED_BLOCK_BYTES:
            return _decode(self.hpack, block)[0]
        hpack = self.hpack
        table = hpack.header_table
        static = self.static.get(block)
        # A table larger than allowed makes hpack reject any block: let it say so.
        if static is not None and table.maxsize <= hpack.max_allowed_table_size:
            replay(table, static[1])
            return static[0]
        # _same_table(self._table_state(), self.cache_state), spelled out: this runs for
        # every header block, and a hit should cost no more than the lookup.
        entries = table.dynamic_entries
        state = self.cache_state
        if (
            (entries[0] if entries else None) is state[0]
            and len(entries) == state[1]
            and table.maxsize == state[2]
            and hpack.max_allowed_table_size == state[3]
        ):
            known = self.cache.get(block)
            if known is not None:
                return known
        else:
            state = self._table_state()
            self.cache.clear()
            self.cache_state = state
        adds = scan(block)
        if adds is not None:
            return self._decode_static(block, adds)
        result, _ = _decode(hpack, block)
        if _same_table(self._table_state(), state):
            if len(self.cache) >= MAX_CACHED_BLOCKS:
                self.cache.clear()
            self.cache[block] = result
        return result

    def _decode_static(self, block: bytes, adds: tuple[bool, ...]) -> _Decoded:
        """Decode a static block and remember it with the entries it added, in order."""
        result, fields = _decode(self.hpack, block)
        added = entries(fields, adds)
        if len(self.static) >= MAX_CACHED_BLOCKS:
            self.static.clear()
        self.static[block] = (result, added)
        return result


def _decode(hpack: HpackDecoder, block: bytes) -> tuple[_Decoded, list[tuple[bytes, bytes]]]:
    """Decode a header block (raises HPACKError): its size and pseudo-header fields, and the
    fields themselves in order."""
    size = 0
    grpc = False
    pseudo: dict[bytes, bytes] = {}
    # A list of HeaderTuple (hpack types it as an Iterable): read twice, here and by the memo.
    fields: list[tuple[bytes, bytes]] = list(hpack.decode(block, True))
    for name, value in fields:
        size += len(name) + len(value) + HPACK_ENTRY_OVERHEAD
        if name.startswith(b":"):
            pseudo[bytes(name)] = bytes(value)
        elif name == b"content-type" and _is_grpc(value):
            grpc = True
    return _Decoded(size, pseudo, grpc), fields


def _is_grpc(content_type: bytes) -> bool:
    """application/grpc, alone or with a +format or ;parameters (gRPC over HTTP/2)."""
    value = content_type.lower()
    return value == GRPC_CONTENT_TYPE or value.startswith(
        (b"application/grpc+", b"application/grpc;")
    )


def _same_table(a: tuple[object, int, int, int], b: tuple[object, int, int, int]) -> bool:
    return a[0] is b[0] and a[1:] == b[1:]


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")[:MAX_NOTE_CHARS]
