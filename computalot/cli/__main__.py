"""``python -m computalot.cli``: the same as the ``computalot`` command."""

from computalot.cli.main import main

main()
