"""Sealed recipes: platform-owned compute run natively on Ray (``docs/recipes.md``).

Each recipe will be a package here with ``schema.py`` (its pydantic payload), ``run.py`` (a
function run as a Ray task that may fan out more Ray work) and its kernels, registered as it is
built. None is served yet: ``POST /api/v1/jobs`` with ``"recipe"`` answers 404 naming the
recipe, and ``docs/recipes.md`` lists what is coming.
"""
