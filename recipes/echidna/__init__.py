"""``echidna``: fuzz Solidity contracts with Echidna (docs/recipes.md, "echidna").

Listed in the catalog with its payload schema; jobs are refused as ``not_available`` until
workers that have Echidna can run it.
"""
