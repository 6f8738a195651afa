"""``python -m autosel``: the command line."""

from autosel.cli import main

main()
