"""``python -m computalot.cli``: the same as the ``computalot`` command."""

from computalot.cli import main

main()
