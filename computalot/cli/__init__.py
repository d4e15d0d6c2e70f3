"""The ``computalot`` command (README, docs/python-sdk.md): platform and admin commands in
:mod:`computalot.cli.main`, user commands in :mod:`computalot.cli.user`, tables in
:mod:`computalot.cli.render`."""

from computalot.cli.main import app, main

__all__ = ["app", "main"]
