"""TLS between real programs nobody on the project wrote: curl against Python's HTTPS server.

Each test serves files with CPython's ``http.server`` over ``ssl`` on loopback, fetches them with
curl (which writes the key log through ``SSLKEYLOGFILE`` and resumes TLS sessions across
connections by default), records the traffic with the project's AF_PACKET recorder, and checks
that the analysis counts exactly what was sent: connections, requests, full and resumed
handshakes, versions, and decrypted messages.
"""

from __future__ import annotations

import http.server
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import analyze_json, check_conservation

from analyzer.live.recorder import LOOPBACK_INTERFACE, Recorder, write_pcap
from analyzer.synth.tlswrap import write_certificate
from analyzer.tls.keylog import KeyLog

URLS = 3


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the stdlib signature
        pass

    def finish(self) -> None:
        super().finish()
        # Close TLS cleanly (close_notify): OpenSSL will not resume a TLS 1.2 session whose
        # connection ended without it, as a real HTTPS server's would not end.
        try:
            self.connection.unwrap()
        except (OSError, ValueError):
            pass


@contextmanager
def https_server(root: Path, keep_alive: bool) -> Iterator[int]:
    """Python's file server over TLS on a free loopback port (HTTP/1.0 closes per request)."""
    cert, key = write_certificate(7, root)
    (root / "www").mkdir()
    (root / "www" / "a.txt").write_bytes(b"a" * 3000)
    handler = type(
        "Handler", (_Quiet,), {"protocol_version": "HTTP/1.1" if keep_alive else "HTTP/1.0"}
    )
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0),
        lambda *a: handler(*a, directory=str(root / "www")),  # type: ignore[misc]
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def record_curl(tmp_path: Path, tls: str, keep_alive: bool) -> tuple[Path, Path]:
    curl = shutil.which("curl")
    assert curl, "curl is part of the base system"
    keys = tmp_path / "curl.keys"
    with https_server(tmp_path, keep_alive) as port:
        recorder = Recorder(LOOPBACK_INTERFACE, port)
        recorder.start()
        try:
            urls = [f"https://127.0.0.1:{port}/a.txt"] * URLS
            version = ["--tlsv1.3"] if tls == "1.3" else ["--tlsv1.2", "--tls-max", "1.2"]
            subprocess.run(
                [curl, "-sk", "--fail", *version, *(["-o", "/dev/null"] * URLS), *urls],
                check=True,
                timeout=60,
                env={**os.environ, "SSLKEYLOGFILE": str(keys)},
            )
            recorder.wait_closed(None)
        finally:
            recorder.stop()
        pcap = tmp_path / "curl.pcap"
        write_pcap(pcap, recorder.frames)
    return pcap, keys


def analysed(pcap: Path, keys: Path) -> dict[str, Any]:
    keylog = KeyLog()
    keylog.load(str(keys))
    result = analyze_json([pcap], keylog=keylog)
    check_conservation(result)
    return result


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_new_connection_per_request_resumes_the_session(tmp_path: Path, tls: str) -> None:
    result = analysed(*record_curl(tmp_path, tls, keep_alive=False))
    conns = result["connections"]
    assert len(conns) == URLS
    assert [c["tls"]["version"] for c in conns] == [tls] * URLS
    assert all(c["tls"]["decrypted"] and c["messages"] == 1 for c in conns)
    summary = result["summary"]["http1"]
    assert summary["messages"] == URLS
    # curl resumes the first connection's session on every later one
    assert (summary["tls_full_handshakes"], summary["tls_resumed_handshakes"]) == (1, URLS - 1)
    assert [m["detail"]["status"] for m in result["messages"]] == [200] * URLS
    # a new connection per request: TCP + TLS setup, then the exchange
    assert summary["round_trips_per_message"] >= 2


def test_keep_alive_pays_one_handshake(tmp_path: Path) -> None:
    result = analysed(*record_curl(tmp_path, "1.3", keep_alive=True))
    assert len(result["connections"]) == 1
    summary = result["summary"]["http1"]
    assert (summary["messages"], summary["tls_full_handshakes"]) == (URLS, 1)
    assert summary["tls_resumed_handshakes"] == 0
    assert [m["round_trips"] for m in result["messages"]] == [1.0] * URLS
