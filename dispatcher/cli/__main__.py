"""``python -m dispatcher.cli`` is ``faxctl`` (used to start child processes)."""

from dispatcher.cli import main

main()
