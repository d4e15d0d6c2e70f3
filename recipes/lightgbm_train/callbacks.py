"""The LightGBM callback the ``lightgbm_train`` operations train with (docs/recipes.md,
"lightgbm_train"): progress every few rounds, and a stop before the job's deadline.

It runs after LightGBM has recorded a round's validation score. Stopping raises
``lightgbm.EarlyStopException``: LightGBM ends the training there and the kernels keep the best
round so far, so a job short of time still answers with a model rather than nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightgbm as lgb

from recipes.lightgbm_train.metrics import RECORDED_AS

#: About how many progress reports one training sends (the context throttles them further).
REPORTS_PER_TRAINING = 50
_METRIC_OF_RECORD = {recorded: metric for metric, recorded in RECORDED_AS.items()}


class RoundWatch:
    """Called by LightGBM after every round: ``report(fields)`` every ``every`` rounds and on
    the last one (``fraction``, ``iteration``, ``metric``, ``metric_value`` of that round and
    ``best_score`` so far, all on the first validation set), and a stop once ``time_up()`` says
    so. ``stopped_at`` is the round it stopped after (None when training ran to the end)."""

    before_iteration = False

    def __init__(
        self,
        rounds: int,
        report: Callable[[dict[str, Any]], None] | None = None,
        time_up: Callable[[], bool] | None = None,
    ) -> None:
        # After record_evaluation (order 20): the round is in its history when this stops it.
        # An instance attribute: lightgbm.train sets one on callbacks whose __dict__ lacks it.
        self.order = 30
        self.rounds = rounds
        self.every = max(1, rounds // REPORTS_PER_TRAINING)
        self.report = report
        self.time_up = time_up
        self.best_score: float | None = None
        self.best_round = 0
        self.stopped_at: int | None = None

    def __call__(self, env: Any) -> None:
        done = env.iteration - env.begin_iteration + 1
        _, recorded, value, higher_is_better = env.evaluation_result_list[0][:4]
        value = float(value)
        better = (
            self.best_score is None
            or (higher_is_better and value > self.best_score)
            or (not higher_is_better and value < self.best_score)
        )
        if better:
            self.best_score, self.best_round = value, done
        stopping = self.time_up is not None and done < self.rounds and self.time_up()
        if self.report is not None and (done % self.every == 0 or done == self.rounds or stopping):
            self.report(
                {
                    "fraction": round(done / self.rounds, 4),
                    "iteration": done,
                    "metric": _METRIC_OF_RECORD.get(recorded, recorded),
                    "metric_value": value,
                    "best_score": self.best_score,
                    "message": f"round {done} of {self.rounds}"
                    + (": stopping, the job's time is running out" if stopping else ""),
                }
            )
        if stopping:
            self.stopped_at = done
            raise lgb.callback.EarlyStopException(self.best_round - 1, env.evaluation_result_list)


def wall_clock_deadline(stop_at: float | None) -> Callable[[], bool] | None:
    """``time_up`` for a task in another process: True once ``time.time()`` reaches
    ``stop_at`` (a wall-clock time; monotonic clocks differ between machines)."""
    if stop_at is None:
        return None
    return lambda: time.time() >= stop_at
