"""``prop_amm``: compile and score submitted Rust AMM strategies, seed for seed with the public
Prop AMM challenge (docs/recipes.md, "prop_amm").

``recipe`` (the catalog entry, light), ``source_check`` (the challenge's source rules),
``build`` (offline cargo builds, cached by source and compiler profile), ``execute`` (the
runner in the task sandbox), ``operations`` (eval, eval_chunk, validate, concavity_check,
build); ``native/`` holds the Rust workspace: the evaluator and the API stand-ins.
"""
