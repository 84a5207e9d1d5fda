"""What every evaluator shares: the ``Evaluation`` it returns and the ``Evaluator``
protocol that the search driver (``search.rounds``) calls.

  evaluations = evaluator.evaluate(archs)       # one Evaluation per arch, in order
  for i, evaluation in evaluator.evaluate_each(archs): ...   # as each finishes

An evaluation that failed (the evaluator raised, the score is not finite) is an
``Evaluation`` with ``error`` set (``Evaluation.failure``): the driver records
it and never tells it to the strategy. ``evaluate_each`` turns an exception of
one arch's ``evaluate`` into such a failure, so one bad arch never ends a search.

Optional round hooks (the base class gives no-op defaults):

  evaluator.rescores_pool                        # True: scores drift; re-score the pool
  evaluator.num_rounds                           # rounds the evaluator defines, or None
  evaluator.before_round(round_, archs, checkpoint)
  arrays, record = evaluator.save()              # for the search's checkpoints
  evaluator.restore(arrays, record)

A *stationary* evaluator (a benchmark table, the training of each child) scores
an arch once and for all: the driver evaluates each asked arch once. An
evaluator whose scores drift as it trains (``rescores_pool``: the NAO-WS
supernet, whose shared weights change between rounds) makes the search keep a
pool of archs: each round new archs replace the worst of the pool,
``before_round`` trains on the pool, and the whole pool is re-scored.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterator, Sequence


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """The result of evaluating one arch.

  Attributes:
    score: the search metric the strategy sees (higher is better).
    report: named metrics reported but never shown to the strategy.
    cost: the evaluation's cost in the evaluator's ``cost_unit``.
    error: why the evaluation failed (then ``score`` means nothing), else None.
  """
  score: float
  report: dict[str, float]
  cost: float
  error: str | None = None

  @classmethod
  def failure(cls, error: str, cost: float = 0.0) -> "Evaluation":
    """A failed evaluation with its message."""
    return cls(math.nan, {}, cost, error)

  @property
  def failed(self) -> bool:
    """Whether it failed or its score is not a finite number."""
    return self.error is not None or not math.isfinite(self.score)


class Evaluator:
  """Base class of evaluators: subclasses set ``space``, ``search_metric`` and
  ``report_metric`` and define ``evaluate``; the hooks default to no-ops.

  Attributes:
    space: the search space of the archs it scores.
    search_metric: the name of ``Evaluation.score`` (in history and plots).
    report_metric: the name of the main metric in ``Evaluation.report``.
    cost_unit: what ``Evaluation.cost`` counts ('queries', 'seconds', ...).
    rescores_pool: whether scores drift between rounds (see the module docstring).
    num_rounds: the number of rounds the evaluator defines (the supernet: one per
      scoring), or None when the search's budget alone ends it.
  """
  space: Any
  search_metric: str
  report_metric: str
  cost_unit: str = "queries"
  rescores_pool: bool = False
  num_rounds: int | None = None

  def evaluate(self, archs: Sequence[Any]) -> list[Evaluation]:
    """One ``Evaluation`` per arch of ``archs``, in order."""
    raise NotImplementedError

  def evaluate_each(self, archs: Sequence[Any]) -> Iterator[tuple[int, Evaluation]]:
    """``(i, evaluation of archs[i])`` for every arch, each yielded as soon as it
    is known (so the driver records it at once), in any order. Default: one
    ``evaluate`` call per arch, in order, an exception becoming a failure; an
    executor (``evaluators.executors``) runs several at once, an evaluator that
    scores a batch at once (the supernet) overrides it."""
    for i, arch in enumerate(archs):
      yield i, evaluate_one(self, arch)

  def before_round(self, round_: int, archs: Sequence[Any],
                   checkpoint: Callable[[], None]) -> None:
    """Called before round ``round_`` evaluates ``archs`` (the pool of a pool search,
    else the archs just asked). An evaluator that trains here (the supernet)
    calls ``checkpoint()`` at points where the search may be checkpointed."""
    del round_, archs, checkpoint

  def observe(self, writer: Any) -> None:
    """Gives the evaluator a TensorBoard writer (``nao_jax.tensorboard.Writer`` of
    ``tb/evaluator``) for what it trains between rounds; default: unused."""
    del writer

  def save(self) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(arrays, record)``: a pytree of arrays and a JSON dict that ``restore`` takes."""
    return {}, {}

  def restore(self, arrays: dict[str, Any], record: dict[str, Any]) -> None:
    """Restores what ``save`` returned (arrays as plain nested dicts of arrays)."""
    del arrays, record


def evaluate_one(evaluator: Evaluator, arch: Any) -> Evaluation:
  """``evaluator.evaluate([arch])[0]``, or a failure naming the exception it raised."""
  try:
    return evaluator.evaluate([arch])[0]
  except Exception as e:  # pylint: disable=broad-except  # A failed trial, recorded.
    return Evaluation.failure(f"{type(e).__name__}: {e}")
