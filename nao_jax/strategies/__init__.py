"""Search strategies with an ask/tell interface (see ``strategies.base``).

``strategies.get('evolution')`` returns the ``Strategy`` bundle of functions;
``default_config(name)`` its config section with the defaults;
``register(name, strategy, default_config)`` adds a user's strategy, which
``config.strategy = name`` then selects in every search job.
"""

from __future__ import annotations

import importlib
from typing import Callable

import ml_collections

from nao_jax.strategies.base import (Archive, Strategy, numpy_rng, one_token_neighbours,
                                     sample_unseen)

DefaultConfig = Callable[..., ml_collections.ConfigDict]

# name -> the module defining ``STRATEGY`` and ``default_config()`` (imported on use,
# so that a strategy's heavy dependencies, the NAO controller, load only when used),
# or a registered ``(Strategy, default_config)``.
_STRATEGIES: dict[str, str | tuple[Strategy, DefaultConfig]] = {
    "random": "nao_jax.strategies.random",
    "evolution": "nao_jax.strategies.evolution",
    "reinforce": "nao_jax.strategies.reinforce",
    "enas": "nao_jax.strategies.enas",
    "nao": "nao_jax.strategies.nao",
    "local": "nao_jax.strategies.local",
    "bananas": "nao_jax.strategies.bananas",
    "gcn": "nao_jax.strategies.gcn",
}


def register(name: str, strategy: Strategy,
             default_config: DefaultConfig = ml_collections.ConfigDict) -> None:
  """Makes ``config.strategy = name`` run ``strategy``; its settings are read from
  ``config.<name>`` (``default_config(**kwargs)`` gives the defaults)."""
  if not isinstance(strategy, Strategy):
    raise TypeError(f"register({name!r}, ...): expected a strategies.Strategy, got "
                    f"{type(strategy).__name__}.")
  _STRATEGIES[name] = (strategy, default_config)


def names() -> list[str]:
  return sorted(_STRATEGIES)


def _entry(name: str) -> tuple[Strategy, DefaultConfig]:
  if name not in _STRATEGIES:
    raise ValueError(f"unknown strategy {name!r}; choose one of {names()} or register one "
                     "with nao_jax.strategies.register.")
  entry = _STRATEGIES[name]
  if isinstance(entry, str):
    module = importlib.import_module(entry)
    return module.STRATEGY, module.default_config
  return entry


def get(name: str) -> Strategy:
  """The ``Strategy`` called ``name``; ``ValueError`` listing the names if unknown."""
  return _entry(name)[0]


def default_config(name: str, **kwargs) -> ml_collections.ConfigDict:
  """The default config section of strategy ``name`` (kwargs: e.g. ``space_name`` for nao)."""
  return _entry(name)[1](**kwargs)


__all__ = ["Archive", "Strategy", "get", "default_config", "names", "numpy_rng",
           "one_token_neighbours", "register", "sample_unseen"]
