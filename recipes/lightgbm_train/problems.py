"""How the ``lightgbm_train`` kernels refuse bad input (docs/recipes.md, "lightgbm_train").

A problem only the data can show (a missing column, a one-class target, more folds than rows)
is an :class:`InputProblem`: a :class:`~recipes.context.RecipeFailure` whose message starts with
the payload field at fault, so the job fails with ``invalid_input`` and that message, never a
traceback. It is a ``ValueError`` as well, for callers using the kernels as a library.
"""

from __future__ import annotations

from recipes.context import RecipeFailure


class InputProblem(RecipeFailure, ValueError):
    """``field: detail``: what is wrong with the payload's ``field`` given this dataset."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail

    def __reduce__(self) -> tuple[type[InputProblem], tuple[str, str]]:
        # Raised in a Ray task, it is pickled back to the operation: keep both arguments.
        return (type(self), (self.field, self.detail))
