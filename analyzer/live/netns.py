"""``--mtu``: the client in a private network namespace behind a veth pair.

Loopback carries 64 KiB segments; a real Ethernet path carries 1500-byte packets.  So the client
runs in its own namespace joined to the host by a veth pair with that MTU, with addresses from
the benchmarking range (RFC 2544 appendix C, 198.18.0.0/15) so nothing real is ever routed, and
the tap listens on the host's end.  ``gso_max_segs 1`` on both ends makes the kernel hand each
TCP segment to the device on its own instead of one 64 KiB GSO block that the tap would see as
a single giant frame.

The broker listens on the host's loopback only, so AMQP goes through a byte relay on the host's
veth address; the relay connects from 127.0.0.1, where RabbitMQ lets ``guest`` in.  The tap
records the client's side of the relay: the bytes pika and the broker exchange, unchanged.

The namespace and both veth ends are removed on the way out, failure and Ctrl-C included
(``ip netns del`` takes the veth pair with it; the host end is deleted too if it lingers).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from analyzer.errors import UsageError
from analyzer.live.client import Endpoint, decode_outcome
from analyzer.live.plan import Sent

#: RFC 2544 appendix C: addresses for benchmarking, never routed on the Internet.
BENCHMARK_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
#: A /30 per run (two hosts), chosen by process id so concurrent runs do not collide.
SUBNETS = BENCHMARK_NETWORK.num_addresses // 4
#: Linux IFNAMSIZ is 16 with the NUL: interface names must be shorter.
MAX_INTERFACE_NAME = 15
#: Seconds a client may run before it is killed (a loopback scenario takes a few seconds).
CLIENT_TIMEOUT_S = 300.0
#: Bytes the relay reads at a time (a 64 KiB read drains any loopback segment).
RELAY_CHUNK_BYTES = 65536
#: Where ``ip netns`` keeps named namespaces (iproute2's NETNS_RUN_DIR).
NETNS_RUN_DIR = Path("/run/netns")
#: The host namespace's interfaces (sysfs).
SYS_CLASS_NET = Path("/sys/class/net")
#: The directory that holds the ``analyzer`` package, for the client process's import path.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace:
    """The names and addresses of one run's namespace and veth pair."""

    name: str
    host_interface: str
    ns_interface: str
    host_address: str
    ns_address: str
    mtu: int


def namespace_for(pid: int, mtu: int) -> Namespace:
    """The namespace of process ``pid``: its own /30 of the benchmarking range."""
    base = BENCHMARK_NETWORK.network_address + 4 * (pid % SUBNETS)
    return Namespace(
        name=f"wireprobe-{pid}",
        host_interface=f"wph{pid}"[:MAX_INTERFACE_NAME],
        ns_interface=f"wpn{pid}"[:MAX_INTERFACE_NAME],
        host_address=str(base + 1),
        ns_address=str(base + 2),
        mtu=mtu,
    )


def setup_commands(ns: Namespace) -> list[list[str]]:
    """The ``ip`` commands that build the namespace, in order."""
    link = ["mtu", str(ns.mtu), "gso_max_segs", "1", "up"]
    peer = ["peer", "name", ns.ns_interface, "netns", ns.name]
    return [
        ["ip", "netns", "add", ns.name],
        ["ip", "link", "add", ns.host_interface, "type", "veth", *peer],
        ["ip", "addr", "add", f"{ns.host_address}/30", "dev", ns.host_interface],
        ["ip", "link", "set", ns.host_interface, *link],
        ["ip", "-n", ns.name, "addr", "add", f"{ns.ns_address}/30", "dev", ns.ns_interface],
        ["ip", "-n", ns.name, "link", "set", ns.ns_interface, *link],
        ["ip", "-n", ns.name, "link", "set", "lo", "up"],
    ]


def teardown_commands(ns: Namespace) -> list[list[str]]:
    """The commands that remove everything ``setup_commands`` made (each may find it gone)."""
    return [
        ["ip", "netns", "del", ns.name],
        ["ip", "link", "del", ns.host_interface],
    ]


def leftovers(ns: Namespace) -> list[str]:
    """What of ``ns`` still exists on the host (empty after a clean run).

    Read from the file system, no ``ip`` process: ``ip netns add`` mounts the namespace at
    /run/netns/NAME, and every interface of the host's namespace is in /sys/class/net.
    """
    found = []
    if (NETNS_RUN_DIR / ns.name).exists():
        found.append(f"namespace {ns.name}")
    if (SYS_CLASS_NET / ns.host_interface).exists():
        found.append(f"interface {ns.host_interface}")
    return found


@contextlib.contextmanager
def network_namespace(ns: Namespace) -> Iterator[Namespace]:
    """Build ``ns``; remove it on the way out, whatever happens inside."""
    try:
        for command in setup_commands(ns):
            _ip(command)
        yield ns
    finally:
        for command in teardown_commands(ns):
            subprocess.run(command, capture_output=True)


def _ip(command: list[str]) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise UsageError("--mtu needs the `ip` command (Debian package iproute2)") from err
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        raise UsageError(f"--mtu: `{' '.join(command)}`: {reason} (it needs root)")


async def run_client(ns: Namespace, plan_json: str) -> tuple[list[Sent], list[Endpoint]]:
    """Run ``python -m analyzer.live.client`` inside ``ns``; its messages and endpoints.

    A plain ``subprocess`` waited on in a worker thread, not asyncio's subprocess support: that
    depends on the process-wide child watcher being attached to this very loop, which other
    libraries in the same process (pyshark) change.
    """
    command = ["ip", "netns", "exec", ns.name, sys.executable, "-m", "analyzer.live.client"]
    # A session of its own keeps the terminal's Ctrl-C away from the client: the parent takes
    # it and kills the client below, so an interrupted run stops in one known order.
    process = subprocess.Popen(
        [*command, plan_json],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=PACKAGE_ROOT,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.to_thread(process.communicate, timeout=CLIENT_TIMEOUT_S)
    except subprocess.TimeoutExpired as timeout:
        raise RuntimeError(f"the client in namespace {ns.name} ran too long") from timeout
    finally:
        if process.poll() is None:  # cancelled, interrupted or timed out: it must not stay
            process.kill()
        process.wait()
    if process.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines() or ["no message"]
        raise RuntimeError(f"the client in namespace {ns.name} failed: {lines[-1]}")
    return decode_outcome(out.decode())


async def relay(listen: Endpoint, target: Endpoint) -> asyncio.Server:
    """A TCP relay from ``listen`` to ``target`` (bytes unchanged, half-closes passed on)."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        for w in (writer, up_writer):
            w.close()

    return await asyncio.start_server(connection, *listen)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(RELAY_CHUNK_BYTES):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
