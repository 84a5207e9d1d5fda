"""Search strategies with an ask/tell interface (see ``strategies.base``).

``strategies.get('evolution')`` returns the ``Strategy`` bundle of functions;
``default_config(name)`` its config section with the defaults.
"""

from __future__ import annotations

import importlib

import ml_collections

from nao_jax.strategies.base import (Archive, Strategy, numpy_rng, one_token_neighbours,
                                     sample_unseen)

# name -> module defining ``STRATEGY`` and ``default_config()``; imported on use
# so that a strategy's heavy dependencies (the NAO controller) load only when used.
STRATEGIES = {
    "random": "nao_jax.strategies.random",
    "evolution": "nao_jax.strategies.evolution",
    "reinforce": "nao_jax.strategies.reinforce",
    "nao": "nao_jax.strategies.nao",
}


def _module(name: str):
  if name not in STRATEGIES:
    raise ValueError(f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}.")
  return importlib.import_module(STRATEGIES[name])


def get(name: str) -> Strategy:
  """The ``Strategy`` called ``name``; ``ValueError`` listing the names if unknown."""
  return _module(name).STRATEGY


def default_config(name: str, **kwargs) -> ml_collections.ConfigDict:
  """The default config section of strategy ``name`` (kwargs: e.g. ``space_name`` for nao)."""
  return _module(name).default_config(**kwargs)


__all__ = ["Archive", "Strategy", "STRATEGIES", "get", "default_config", "numpy_rng",
           "sample_unseen"]
