"""``python -m analyzer.cli``: the console script without installing it."""

from analyzer.cli.exits import main

main()
