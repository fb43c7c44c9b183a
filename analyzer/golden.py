"""Golden captures: the analysis JSON of a capture as a stable, diffable baseline text.

Used by ``scripts/update_baselines.py`` (which writes baselines) and the golden tests (which
compare against them), so both render a capture the same way.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from analyzer.options import AnalyzeOptions, DecodeOptions
from analyzer.pipeline import analyze
from analyzer.report.render import Collector
from analyzer.tls.keylog import KeyLog

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz")


def golden_captures(folder: Path) -> list[Path]:
    """Every capture in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.name.endswith(CAPTURE_SUFFIXES))


def _stem(capture: Path) -> str:
    name = capture.name
    for suffix in sorted(CAPTURE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return capture.stem


def baseline_path(capture: Path) -> Path:
    return capture.with_name(_stem(capture) + ".json")


def keylog_path(capture: Path) -> Path:
    return capture.with_name(_stem(capture) + ".keys")


def render_baseline(capture: Path) -> str:
    """The analysis JSON of ``capture`` (with its key log if one sits beside it), pretty-printed,
    with the capture's path reduced to its name so the baseline does not depend on where the
    checkout lives."""
    keylog = KeyLog()
    if keylog_path(capture).exists():
        keylog.load(str(keylog_path(capture)))
    collector = Collector("json")
    options = AnalyzeOptions(decode=DecodeOptions(keylog=keylog))
    analysis = analyze([str(capture)], options, on_record=collector.add)
    out = io.StringIO()
    collector.render(analysis, out)
    data = json.loads(out.getvalue())
    # Health and findings are derived from the figures the baseline already holds (tested in
    # tests/test_cli_ux.py); keeping them out leaves the baselines to the figures themselves.
    for derived in ("health", "findings"):
        data.pop(derived, None)
    for entry in data["captures"]:
        entry["path"] = Path(entry["path"]).name
    return json.dumps(data, indent=1, sort_keys=True) + "\n"
