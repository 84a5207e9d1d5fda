"""Evaluators: architectures -> scores (+ reported metrics and cost).

An evaluator has ``space``, ``search_metric``, ``report_metric`` and
``evaluate(archs) -> list[Evaluation]``. ``from_config(config.evaluator)``
builds one by ``name``.
"""

from __future__ import annotations

from typing import Any, Callable

from nao_jax.evaluators.tabular import Evaluation, MacroTable, Nb201Table

EVALUATORS: dict[str, Callable[..., Any]] = {
    "nb201": Nb201Table,
    "macro": MacroTable,
}


def get(name: str, **settings: Any) -> Any:
  """Builds evaluator ``name``; ``ValueError`` listing the names if unknown."""
  if name not in EVALUATORS:
    raise ValueError(f"name: unknown evaluator {name!r}; choose one of {sorted(EVALUATORS)}.")
  try:
    return EVALUATORS[name](**settings)
  except TypeError as e:
    raise ValueError(f"evaluator {name!r}: bad settings {sorted(settings)} ({e}).") from None


def from_config(evaluator_config: Any) -> Any:
  """Builds an evaluator from a config section ``{name: ..., <settings>}``."""
  settings = dict(evaluator_config)
  return get(settings.pop("name", None), **settings)


__all__ = ["Evaluation", "EVALUATORS", "MacroTable", "Nb201Table", "get", "from_config"]
