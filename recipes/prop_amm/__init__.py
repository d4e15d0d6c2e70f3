"""``prop_amm``: score submitted Rust AMM strategies (docs/recipes.md, "prop_amm").

Listed in the catalog with its payload schema; jobs are refused as ``not_available`` until its
evaluator and toolchain are built.
"""
