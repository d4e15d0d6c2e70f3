"""``lightgbm_train``: LightGBM on a dataset artifact (docs/recipes.md, "lightgbm_train").

Light on purpose (the API process imports :mod:`recipe` and :mod:`schema`, which need only
pydantic): ``recipe`` registers the recipe, ``schema`` is the payload, ``operations`` the two
operations a recipe task runs. The kernels load LightGBM, NumPy and pyarrow when imported:
``formats`` and ``dataset`` read and check the file, ``train`` holds :func:`train.train` and
the one-fold :func:`train.cross_validate_fold`, ``folds`` runs the folds as parallel tasks on
rows binned once, ``metrics`` scores as LightGBM does, ``problems`` is how bad input is refused.

LightGBM's OpenMP threads wait passively here (``OMP_WAIT_POLICY=PASSIVE`` unless set already,
read when LightGBM's library loads, so before any of this package's kernels import it): a job's
CPUs on a Ray node are a reservation, not dedicated cores, and with the default spinning wait a
2-thread training on 2 cores that something else also uses ran 5 to 15 times slower (50,000 x
50 rows, 100 rounds: 1.2-1.7 s passive, 6.6-16.8 s spinning, 1.0-1.6 s on one thread).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
