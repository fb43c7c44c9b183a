#!/usr/bin/env python3
"""Fuzzing targets for every parser wireprobe runs on strangers' bytes (DESIGN.md section 8).

    python tests/fuzz_targets.py TARGET [libFuzzer options]   # coverage-guided, with atheris
    python tests/fuzz_targets.py TARGET --replay FILE...       # run inputs once (regressions)
    python tests/fuzz_targets.py TARGET --write-seeds DIR      # a starting corpus

Each target takes one ``bytes`` and raises only when wireprobe is wrong: an exception that is
not one of its own (``WireprobeError``), or a broken contract (a decoder's spans that do not
cover each byte once, a ledger that does not conserve bytes, a fast path that disagrees with
the general path).  ``TARGETS`` names them; ``seeds(name)`` gives a few valid inputs for each,
built from the repository's captures, so the fuzzer starts from real structure.

The same targets run three ways: ``scripts/fuzz.sh`` (atheris, minutes per target), the test
suite (a fixed budget: a deterministic mutation loop in-process and a short atheris run with a
fixed seed, tests/test_fuzz.py), and the replay of every input kept under tests/fuzz_regressions/.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path[:0] = [str(ROOT), str(TESTS)]

REGRESSIONS = TESTS / "fuzz_regressions"
CAPTURES = ROOT / "captures"

Target = Callable[[bytes], None]
#: The environment variable that names the target to -fork children of libFuzzer.
TARGET_ENV = "WIREPROBE_FUZZ_TARGET"


def _imports() -> None:
    """Import what the targets exercise (inside atheris's instrumentation when fuzzing)."""
    global capture, decoder_harness, errors, events, keylog, options, pipeline, report, tls
    global amqp, http1, http2
    import decoder_harness

    from analyzer import errors, options, pipeline
    from analyzer.capture import reader as capture
    from analyzer.decoding import events
    from analyzer.protocols.amqp import decoder as amqp
    from analyzer.protocols.http1 import decoder as http1
    from analyzer.protocols.http2 import decoder as http2
    from analyzer.report import render as report
    from analyzer.tls import decoder as tls
    from analyzer.tls import keylog


# -- turning fuzz bytes into structured input -------------------------------------------------


def steps_of(data: bytes) -> list[tuple[int, bytes]]:
    """A conversation from bytes: each step is a header byte (bit 7: direction, bits 0-6: length
    in units of 4 bytes, 0 meaning the rest) and that many bytes."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        head = data[pos]
        pos += 1
        size = (head & 0x7F) * 4 or len(data) - pos
        out.append((head >> 7, data[pos : pos + size]))
        pos += size
    return out


def pcap_of(data: bytes) -> bytes:
    """A classic pcap whose records are TCP segments between two hosts, shaped by ``data``.

    Per packet: 1 byte of flags, 1 of direction and timestamp step, 2 of sequence delta, 2 of
    ack delta, 1 of payload length, then the payload.  Most segments are then plausible enough
    to reach reassembly and the decoders, and every field can still be anything."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    seqs, ts, pos = [1000, 5000], 1_700_000_000.0, 0
    hosts = (bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2]))
    ports = (40000, 443 if data[:1] == b"\x16" else 80)
    while pos + 7 <= len(data):
        flags, step, dseq, dack, size = struct.unpack_from("!BBhhB", data, pos)
        pos += 7
        payload = data[pos : pos + size]
        pos += size
        d = step & 1
        ts += ((step >> 1) - 8) * 0.01  # sometimes backwards
        seqs[d] = (seqs[d] + dseq) & 0xFFFFFFFF
        ack = (seqs[1 - d] + dack) & 0xFFFFFFFF
        tcp = struct.pack(
            "!HHIIBBHHH", ports[d], ports[1 - d], seqs[d], ack, 5 << 4, flags, 65535, 0, 0
        )
        total = 20 + len(tcp) + len(payload)
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 6, 0, hosts[d], hosts[1 - d]
        )
        frame = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00" + ip + tcp + payload
        sec = int(ts)
        out.append(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)))
        out.append(frame)
        seqs[d] = (seqs[d] + len(payload)) & 0xFFFFFFFF
    return b"".join(out)


# -- the targets --------------------------------------------------------------------------------


def fuzz_capture(data: bytes) -> None:
    """The capture reader: pcap, pcapng, gzip, from a stream."""
    try:
        captures = capture.CaptureSet(["-"], stdin=io.BytesIO(data), on_secrets=_any_secrets)
    except errors.CaptureError:
        return
    for ts, link_type, orig_len, packet in captures:
        assert orig_len >= len(packet) and isinstance(ts, float) and link_type >= 0


def _any_secrets(kind: int, data: bytes) -> str | None:
    return keylog.secrets_block(keylog.KeyLog(), kind, data)


def _analysis(pcap: bytes, *, fast: bool) -> dict[str, object]:
    collector = report.Collector("json")
    opts = options.AnalyzeOptions(fast_path=fast, max_open_connections=8)
    result = pipeline.analyze(["-"], opts, on_record=collector.add, stdin=io.BytesIO(pcap))
    out = io.StringIO()
    collector.render(result, out)
    parsed: dict[str, object] = json.loads(out.getvalue())
    return parsed


def fuzz_flows(data: bytes) -> None:
    """Packets, reassembly, the flow table and the ledger: conservation, and the fast path equal
    to the general one.  An odd first byte makes the frames themselves fuzz bytes."""
    if data[:1] and data[0] & 1:
        frames = steps_of(data[1:])
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
        for i, (_, frame) in enumerate(frames):
            out.append(struct.pack("<IIII", 1000 + i, 0, len(frame), len(frame) + i % 3) + frame)
        pcap = b"".join(out)
    else:
        pcap = pcap_of(data[1:])
    fast = _analysis(pcap, fast=True)
    assert fast == _analysis(pcap, fast=False)
    from conftest import check_conservation

    check_conservation(fast)


def _decoder_target(make: Callable[[], events.StreamDecoder], data: bytes) -> None:
    try:
        decoder_harness.run(make, steps_of(data))
    except errors.WireprobeError:
        return


def fuzz_http1(data: bytes) -> None:
    ids = events.MessageIds()
    _decoder_target(lambda: http1.Http1Decoder(ids, options.DecodeOptions()), data)


def fuzz_http2(data: bytes) -> None:
    ids = events.MessageIds()
    _decoder_target(lambda: http2.Http2Decoder(ids, options.DecodeOptions()), data)


def fuzz_amqp(data: bytes) -> None:
    ids = events.MessageIds()
    _decoder_target(lambda: amqp.AmqpDecoder(ids, options.DecodeOptions()), data)


def fuzz_tls(data: bytes) -> None:
    """The TLS record layer and handshake parser (without keys, and with a key log that names
    every client random the input could carry, so decryption paths run too)."""
    ids = events.MessageIds()
    _decoder_target(lambda: tls.TlsDecoder(ids, options.DecodeOptions(), ports=(50000, 443)), data)
    for parse in (tls.parse_client_hello, tls.parse_server_hello):
        with contextlib.suppress(errors.WireprobeError):
            parse(data)


def fuzz_keylog(data: bytes) -> None:
    keys = keylog.KeyLog()
    taken = keys.add_text(data)
    assert taken <= data.count(b"\n") + 1
    assert len(keys) <= taken
    assert repr(keys) == f"<KeyLog {len(keys)} entries>"


TARGETS: dict[str, Target] = {
    "capture": fuzz_capture,
    "flows": fuzz_flows,
    "http1": fuzz_http1,
    "http2": fuzz_http2,
    "amqp": fuzz_amqp,
    "tls": fuzz_tls,
    "keylog": fuzz_keylog,
}


# -- seeds ---------------------------------------------------------------------------------------


def _streams(path: Path, limit: int = 6000) -> bytes:
    """The first bytes of both directions of a capture's first connection, as steps."""
    from analyzer.packets import decode

    out, first, used = [], None, 0
    for _ts, link_type, orig_len, frame in capture.CaptureSet([str(path)]):
        seg = decode(link_type, frame, orig_len)
        if isinstance(seg, str) or not seg[9]:
            continue
        payload = bytes(seg[8])
        first = first or (seg[0], seg[2])
        direction = 0 if (seg[0], seg[2]) == first else 1
        for i in range(0, len(payload), 0x7F * 4):
            piece = payload[i : i + 0x7F * 4]
            piece += b"\0" * (-len(piece) % 4)
            out.append(bytes([direction << 7 | len(piece) // 4]) + piece)
            used += len(piece)
        if used > limit:
            break
    return b"".join(out)


def _frames(path: Path, count: int = 40) -> bytes:
    """The first frames of a capture (those that fit a step), as steps for ``fuzz_flows``."""
    out = []
    for _ts, _link, _orig, frame in capture.CaptureSet([str(path)]):
        frame += b"\0" * (-len(frame) % 4)  # Ethernet padding: the IP length still rules
        if len(frame) <= 0x7F * 4:
            out.append(bytes([len(frame) // 4]) + frame)
        if len(out) == count:
            break
    return b"".join(out)


def seeds(name: str) -> list[bytes]:
    """A few valid inputs for target ``name``."""
    _imports()
    if name == "capture":
        small = sorted(CAPTURES.glob("gen-*.pcap"), key=lambda p: p.stat().st_size)[:3]
        found = [p.read_bytes()[:4096] for p in small]
        public = sorted((CAPTURES / "public").rglob("*.pcapng"), key=lambda p: p.stat().st_size)
        return found + [p.read_bytes()[:4096] for p in public[:3]]
    if name == "flows":
        hello = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        shaped = bytes([0, 0x02, 16, 0, 0, 0, 0, 0, 0x12, 17, 0, 0, 0, 1, 0, 0x18, 16, 0, 1])
        shaped += bytes([0x10, 16, 0, 0, 0, 0, len(hello)]) + hello
        return [shaped, b"\x01" + _frames(CAPTURES / "gen-http1-keepalive.pcap")]
    if name == "keylog":
        return [(CAPTURES / "gen-http1-tls13-new-conn.keys").read_bytes()[:2000]]
    source = {
        "http1": "gen-http1-keepalive.pcap",
        "http2": "gen-http2-concurrency8.pcap",
        "amqp": "gen-amqp-confirm.pcap",
        "tls": "gen-http1-tls12.pcap",
    }[name]
    return [_streams(CAPTURES / source)]


def mutations(seed_inputs: list[bytes], n: int, rng: random.Random) -> Iterator[bytes]:
    """``n`` inputs from a deterministic mutation of the seeds (the fuzzer without atheris):
    bit flips, byte overwrites with boundary values, truncation, duplication and splicing."""
    for _ in range(n):
        data = bytearray(rng.choice(seed_inputs))
        for _ in range(rng.randint(1, 8)):
            op = rng.randrange(5)
            at = rng.randrange(len(data) + 1)
            if op == 0 and data:
                data[at % len(data)] ^= 1 << rng.randrange(8)
            elif op == 1 and data:
                data[at % len(data)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF))
            elif op == 2:
                del data[at:]
            elif op == 3:
                data[at:at] = data[at : at + rng.randint(1, 64)]
            else:
                other = rng.choice(seed_inputs)
                data[at:] = other[rng.randrange(len(other) + 1) :]
        yield bytes(data)


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[1] in TARGETS:
        # libFuzzer's -fork mode runs this script again with its own options only: the
        # target travels in the environment to those children.
        os.environ[TARGET_ENV] = argv[1]
    elif os.environ.get(TARGET_ENV) in TARGETS:
        argv = [argv[0], os.environ[TARGET_ENV], *argv[1:]]
    if len(argv) < 2 or argv[1] not in TARGETS:
        raise SystemExit(
            f"usage: {argv[0]} {'|'.join(TARGETS)} [--replay FILE... | libFuzzer options]"
        )
    name = argv[1]
    if argv[2:3] == ["--write-seeds"]:
        folder = Path(argv[3])
        folder.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(seeds(name)):
            (folder / f"seed-{i}").write_bytes(seed)
        return
    if argv[2:3] == ["--replay"]:
        _imports()
        for path in argv[3:]:
            TARGETS[name](Path(path).read_bytes())
        return
    import atheris

    with atheris.instrument_imports(include=["analyzer"]):
        _imports()
    target = TARGETS[name]
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
