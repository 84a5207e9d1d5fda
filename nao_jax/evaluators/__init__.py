"""Evaluators: architectures -> scores (+ reported metrics and cost).

The protocol is ``evaluators.base.Evaluator``. ``build(config)`` makes the one
that ``config.evaluator.name`` names; ``register(name, build)`` adds a user's:

  class MyEvaluator(evaluators.Evaluator): ...
  evaluators.register("mine", lambda config: MyEvaluator(config.evaluator.my_setting))

A build function takes the job's whole config (the supernet reads
``config.space``, ``config.data`` and ``config.supernet``; a table only
``config.evaluator``) and returns an ``Evaluator``; modules named here are
imported on use, so the supernet's JAX model loads only when it is used.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import ml_collections

from nao_jax import configuration
from nao_jax.evaluators import executors
from nao_jax.evaluators.base import Evaluation, Evaluator

Build = Callable[[ml_collections.ConfigDict], Evaluator]

# name -> a build function, or the module whose ``build(config)`` it is.
_EVALUATORS: dict[str, Build | str] = {
    "nb201": "nao_jax.evaluators.tabular",
    "macro": "nao_jax.evaluators.tabular",
    "supernet": "nao_jax.evaluators.supernet",
    "rnn_supernet": "nao_jax.evaluators.rnn_supernet",
    "child": "nao_jax.evaluators.child",
}


def register(name: str, build: Build) -> None:
  """Makes ``config.evaluator.name = name`` build its evaluator with ``build(config)``."""
  if not callable(build):
    raise TypeError(f"register({name!r}, ...): build must be a function of the config.")
  _EVALUATORS[name] = build


def names() -> list[str]:
  return sorted(_EVALUATORS)


def build(config: ml_collections.ConfigDict) -> Evaluator:
  """The evaluator ``config.evaluator.name`` names, built from ``config``, its
  trials run by the executor of ``config.executor`` (``evaluators.executors``)."""
  return executors.wrap(build_plain(config), config)


def build_plain(config: ml_collections.ConfigDict) -> Evaluator:
  """The evaluator ``config.evaluator.name`` names, built from ``config`` (without
  an executor: what a worker of one runs).

  Raises:
    ConfigError: the name is unknown, or the build rejected a setting (a plain
      ``ValueError`` of the build is taken to be about ``config.evaluator``).
  """
  name = configuration.value(config, "evaluator.name")
  if name not in _EVALUATORS:
    raise configuration.ConfigError(
        "evaluator.name", f"unknown evaluator {name!r}; choose one of {names()} or register "
        "one with nao_jax.evaluators.register.")
  entry = _EVALUATORS[name]
  if isinstance(entry, str):
    entry = importlib.import_module(entry).build
  try:
    return entry(config)
  except configuration.ConfigError:
    raise
  except ValueError as e:
    raise configuration.ConfigError("evaluator", str(e)) from e


def get(name: str, **settings: Any) -> Evaluator:
  """A tabular evaluator by name with its settings, e.g. ``get('nb201', path=FILE)``."""
  return build(ml_collections.ConfigDict({"evaluator": {"name": name, **settings}}))


__all__ = ["Build", "Evaluation", "Evaluator", "build", "build_plain", "get", "names",
           "register"]
