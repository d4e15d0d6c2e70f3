"""The ``computalot`` command (README, docs/python-sdk.md): platform and admin commands in
:mod:`computalot.cli.main`, user commands in :mod:`computalot.cli.user`, tables in
:mod:`computalot.cli.render`; :func:`main` (the console script) runs them through
:mod:`computalot.cli.entry` (``--debug``, one error line, documented exit codes)."""

from computalot.cli.main import app


def main() -> None:
    from computalot.cli.entry import run

    run(app)


__all__ = ["app", "main"]
