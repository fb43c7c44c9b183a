"""The anomaly catalogue (analyzer/anomalies.py) names everything the code reports, and only that.

Anomaly names are part of the JSON contract, so a new one must be documented where users look
(docs/anomalies.md) and a removed one must leave the catalogue.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import check_catalogued

from analyzer.anomalies import CATALOGUE, markdown

ROOT = Path(__file__).resolve().parent.parent
ANALYZER = ROOT / "analyzer"

#: The layers anomaly names start with (DESIGN.md habit 4: ``layer.condition``).
LAYERS = {name.split(".")[0] for name in CATALOGUE} | {"grpc"}
_NAME = re.compile(r"[a-z][a-z0-9]*\.[a-z][a-z0-9_]*")
#: Literals of the same shape that are file names, not anomalies ("capture.pcap").
_FILE_SUFFIXES = {"pcap", "pcapng", "gz", "json", "md", "html", "csv", "png", "keys", "log", "conf"}
#: Modules whose dotted names are other vocabularies of the contract: findings (report/
#: findings.py, shown under "what to look at") and the ``inferred_by`` keys of lost messages.
_OTHER_VOCABULARIES = {"report/findings.py", "accounting/unaccounted.py", "anomalies.py"}


def _names_in_code() -> dict[str, list[str]]:
    """Every string constant in analyzer/ shaped like an anomaly name, with where it is."""
    found: dict[str, list[str]] = {}
    for path in sorted(ANALYZER.rglob("*.py")):
        where = path.relative_to(ANALYZER).as_posix()
        if where in _OTHER_VOCABULARIES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        findings = {
            id(k.value) for k in ast.walk(tree) if isinstance(k, ast.keyword) and k.arg == "name"
        }
        for node in ast.walk(tree):
            if id(node) in findings:
                continue  # Finding(name="input.duplicate", ...): a finding, not an anomaly
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                layer, _, rest = text.partition(".")
                if _NAME.fullmatch(text) and layer in LAYERS and rest not in _FILE_SUFFIXES:
                    found.setdefault(text, []).append(where)
    return found


def test_every_name_the_code_reports_is_catalogued() -> None:
    missing = {name: where for name, where in _names_in_code().items() if name not in CATALOGUE}
    assert not missing, f"add these to analyzer/anomalies.py: {missing}"


def test_every_catalogued_name_is_still_reported_somewhere() -> None:
    stale = set(CATALOGUE) - set(_names_in_code())
    assert not stale, f"no code reports these any more: {sorted(stale)}"


def test_results_are_checked_against_the_catalogue() -> None:
    # conftest.check_conservation, run on every result the tests make, also checks the names.
    result = {"captures": [], "connections": [{"anomalies": [{"name": "tcp.no_such", "count": 1}]}]}
    with pytest.raises(AssertionError):
        check_catalogued(result)
    result["connections"][0]["anomalies"][0]["name"] = "tcp.gap"
    check_catalogued(result)


def test_the_scan_would_see_a_new_name() -> None:
    # The scan is only a guard if it finds what decoders write: spot-check two idioms.
    found = _names_in_code()
    assert "tcp.bad_flags" in found  # conn.anomalies["tcp.bad_flags"]
    assert "http1.bad_chunk" in found  # self._bad(st, "http1.bad_chunk")


def test_the_documentation_is_the_catalogue() -> None:
    page = ROOT / "docs" / "anomalies.md"
    assert page.read_text(encoding="utf-8") == markdown(), (
        "regenerate it: python -m analyzer.anomalies > docs/anomalies.md"
    )
