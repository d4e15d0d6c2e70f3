"""``lightgbm_train``: LightGBM on a dataset artifact (docs/recipes.md, "lightgbm_train").

``schema`` is the payload, ``dataset`` reads and checks the file, ``train`` holds the kernels a
recipe task calls with a local dataset path: :func:`train` and, one fold per Ray task,
:func:`cross_validate_fold` (on subsets of the rows :func:`bin_rows` binned once) joined by
:func:`summarise_folds`.
"""

from recipes.lightgbm_train.schema import LightGBMTrainPayload
from recipes.lightgbm_train.train import (
    MODEL_FILE,
    bin_rows,
    cross_validate,
    cross_validate_fold,
    summarise_folds,
    train,
)

__all__ = [
    "MODEL_FILE",
    "LightGBMTrainPayload",
    "bin_rows",
    "cross_validate",
    "cross_validate_fold",
    "summarise_folds",
    "train",
]
