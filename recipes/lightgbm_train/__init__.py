"""``lightgbm_train``: LightGBM on a dataset artifact (docs/recipes.md, "lightgbm_train").

Light on purpose (the API process imports :mod:`recipe` and :mod:`schema`, which need only
pydantic): ``recipe`` registers the recipe, ``schema`` is the payload, ``operations`` the two
operations a recipe task runs. The kernels load LightGBM, NumPy and pyarrow when imported:
``formats`` and ``dataset`` read and check the file, ``train`` holds :func:`train.train` and
the one-fold :func:`train.cross_validate_fold`, ``folds`` runs the folds as parallel tasks on
rows binned once, ``metrics`` scores as LightGBM does, ``problems`` is how bad input is refused.
"""
