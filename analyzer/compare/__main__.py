"""``python -m analyzer.compare``: the same as ``wireprobe compare``."""

from __future__ import annotations

import sys

from analyzer.cli import main

if __name__ == "__main__":
    sys.argv[1:1] = ["compare"]
    main()
