#!/usr/bin/env python3
"""Rewrite the baseline JSON of every golden capture in captures/ and print what changed.

    scripts/update_baselines.py [CAPTURE ...]

Baselines change only through this script (STYLE.md habit 12): run it after a change that is
meant to move a figure, read the diff it prints, and commit both together.  A capture's key log,
if any, sits beside it as ``NAME.keys``.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analyzer.golden import baseline_path, golden_captures, render_baseline  # noqa: E402


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or golden_captures(ROOT / "captures")
    changed = 0
    for capture in paths:
        target = baseline_path(capture)
        new = render_baseline(capture)
        old = target.read_text(encoding="utf-8") if target.exists() else ""
        if old == new:
            continue
        changed += 1
        diff = difflib.unified_diff(
            old.splitlines(), new.splitlines(), str(target), str(target), lineterm="", n=1
        )
        print("\n".join(diff))
        target.write_text(new, encoding="utf-8")
    print(f"{changed} baseline(s) rewritten, {len(paths) - changed} unchanged", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
