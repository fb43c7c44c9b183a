"""The client side of a live run as its own process: ``python -m analyzer.live.client PLAN``.

``--mtu`` runs the client inside a network namespace (``ip netns exec``), which only a separate
process can enter.  PLAN is the JSON of an ``HttpPlan`` (with the server's URL) or an
``AmqpPlan``; the process prints one JSON line on stdout: the messages sent and the client
endpoints of the recorded connections.  Exit status 0 on success, 1 with the error on stderr.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from analyzer.live.amqp import AmqpPlan, run_amqp
from analyzer.live.eventloop import run_in_private_loop
from analyzer.live.http import HttpPlan, drive
from analyzer.live.plan import Sent

Endpoint = tuple[str, int]


def encode_plan(plan: HttpPlan | AmqpPlan, url: str | None = None) -> str:
    """The command-line argument for ``plan`` (``url``: where the HTTP server listens)."""
    fields = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(plan).items()}
    kind = "http" if isinstance(plan, HttpPlan) else "amqp"
    return json.dumps({"kind": kind, "url": url, "plan": fields})


def decode_plan(text: str) -> tuple[HttpPlan | AmqpPlan, str | None]:
    """The inverse of ``encode_plan``."""
    spec = json.loads(text)
    fields: dict[str, Any] = spec["plan"]
    if spec["kind"] == "amqp":
        return AmqpPlan(**fields), None
    for name in ("keylog", "workdir"):
        if fields[name] is not None:
            fields[name] = Path(fields[name])
    return HttpPlan(**fields), spec["url"]


def run(plan: HttpPlan | AmqpPlan, url: str | None) -> tuple[list[Sent], list[Endpoint]]:
    """Run the client side of ``plan``; the messages and the recorded clients."""
    if isinstance(plan, AmqpPlan):
        clients: list[Endpoint] = []
        return run_amqp(plan, clients.append), clients
    assert url is not None
    sent = run_in_private_loop(drive(plan, url))
    return sent, list(dict.fromkeys(s.client for s in sent))


def encode_outcome(sent: list[Sent], clients: list[Endpoint]) -> str:
    """The one line the process prints."""
    return json.dumps({"sent": [asdict(s) for s in sent], "clients": clients})


def decode_outcome(text: str) -> tuple[list[Sent], list[Endpoint]]:
    """The inverse of ``encode_outcome``."""
    outcome = json.loads(text)
    sent = [Sent(**{**s, "client": tuple(s["client"])}) for s in outcome["sent"]]
    return sent, [(host, port) for host, port in outcome["clients"]]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m analyzer.live.client PLAN_JSON", file=sys.stderr)
        return 1
    try:
        sent, clients = run(*decode_plan(argv[0]))
    except Exception as err:  # the parent reports it: one line, no traceback
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(encode_outcome(sent, clients))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
