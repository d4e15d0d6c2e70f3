"""The packing optimisers (docs/recipes.md, "packing"): a penalty-method local minimiser with a
feasibility repair (:mod:`.objective`), starting arrangements (:mod:`.starts`), the island steps
of ``feasible_optimize``, ``basin_hopping`` and ``differential_evolution`` (:mod:`.islands`) and
the epoch loop that fans islands out over ``ctx.parallel`` (:mod:`.driver`).
"""
