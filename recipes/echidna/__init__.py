"""``echidna``: fuzz Solidity contracts with Echidna (docs/recipes.md, "echidna").

Runs on nodes with the ``echidna`` worker capability (``computalot.capabilities``); elsewhere
its jobs are refused as ``not_available`` naming it. ``recipe`` (the light catalog entry),
``project`` (unpacking), ``command`` (the command line), ``output`` (reading the report),
``operations`` (the run).
"""
