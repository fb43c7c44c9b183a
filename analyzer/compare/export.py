"""The data behind the report (issue 14): one JSON of the whole matrix and a CSV per chart.

Every figure a table, chart or verdict prints is in ``compare.json`` under the same name, so a
reader can redraw a chart in a notebook or check a number without re-running.  Pure: returns
text; the command writes the files.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from typing import Any

from analyzer.compare.charts import ChartData
from analyzer.compare.claims import Claim
from analyzer.compare.endtoend import PathFigures, overhead_bytes, path_figures
from analyzer.compare.matrix import Case, CompareResult
from analyzer.compare.sections import LIVE_TOLERANCE, live_differences, live_reason
from analyzer.compare.timing import BANDWIDTH_BITS_PER_S, MODEL, NETWORKS, path_time_s, per_second

SCHEMA = "wireprobe.compare/1"
CSV_COLUMNS = ("chart", "panel", "series", "x", "y")


def case_record(result: CompareResult, case: Case) -> dict[str, Any]:
    """One case: what it is, and the analyzer's figures per message."""
    m = result.of(case)
    return {
        "label": case.label,
        **asdict(case),
        "protocol": case.protocol,
        "summary": m.summary,
        "marginal_bytes_per_message": result.marginal_bytes(case),
        "overhead_bytes_per_message": overhead_bytes(m.summary),
        "message_round_trips_per_message": m.message_round_trips,
        "truth": (m.truth_summary or {}).get(case.protocol),
        "agrees_with_truth": m.agrees_with_truth,
        "synthetic": (result.synthetic[case].summary if case in result.synthetic else None),
    }


def path_record(p: PathFigures) -> dict[str, Any]:
    """One path: its legs' figures, their sum and its time at every stated network."""
    return {
        "key": p.case.path.key,
        "label": p.case.label,
        "name": p.case.path.name,
        "pattern": p.case.path.pattern,
        "family": p.case.path.family,
        "tls": p.case.tls,
        "payload": p.case.payload,
        "per_connection": p.case.per_connection,
        "one_way_trips": p.case.path.one_way_trips,
        "pairing": "generator topology (each leg its own capture)",
        "legs": [
            {
                "label": leg.leg.label,
                "case": leg.case.label,
                "connections": leg.connections,
                "figures": leg.figures,
                "truth": leg.truth,
                "agrees_with_truth": leg.agrees_with_truth,
            }
            for leg in p.legs
        ],
        "total": p.total,
        "truth_total": p.truth_total,
        "time": {
            n.name: {"ms": 1000 * path_time_s(p, n), "per_second": per_second(path_time_s(p, n))}
            for n in NETWORKS
        },
    }


def claim_record(c: Claim) -> dict[str, Any]:
    return asdict(c)


def matrix_json(
    result: CompareResult, claims: tuple[Claim, ...], charts: dict[str, ChartData]
) -> str:
    """``compare.json``: every case, leg, path, claim and chart file of the run."""
    o = result.options
    document = {
        "schema": SCHEMA,
        "source": "live" if o.live else "synthetic",
        "options": asdict(o),
        "elapsed_s": result.elapsed_s,
        "cases": [case_record(result, c) for c in result.matrix.cases],
        "not_run": [
            {"case": n.case.label, **asdict(n.case), "reason": n.reason} for n in result.not_run
        ],
        "paths": [path_record(p) for p in path_figures(result)],
        "timing": {
            "model": MODEL,
            "bandwidth_bits_per_s": BANDWIDTH_BITS_PER_S,
            "networks": [asdict(n) for n in NETWORKS],
        },
        "claims": [claim_record(c) for c in claims],
        "live_against_synthetic": {
            "tolerance": {k: {"kind": v[0], "bound": v[1]} for k, v in LIVE_TOLERANCE.items()},
            "figures": [
                {
                    "case": label,
                    "figure": name,
                    "live": live,
                    "synthetic": model,
                    "within": ok,
                    "why": live_reason(name, ok),
                }
                for label, name, live, model, ok in live_differences(result)
            ],
        },
        "charts": {name: f"{name}.csv" for name in charts},
    }
    return json.dumps(document, indent=2, sort_keys=False, default=str) + "\n"


def chart_csv(data: ChartData) -> str:
    """The points of one chart, one row each: enough to redraw it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in data.series:
        for x, y in zip(s.x, s.y, strict=True):
            writer.writerow((data.name, s.panel, s.label, x, repr(float(y))))
    return out.getvalue()
