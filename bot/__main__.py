"""``python -m bot`` is the same as the ``duban`` command."""

from bot.cli import main

main()
