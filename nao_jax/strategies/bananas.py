"""BANANAS (White, Neiswanger, Savani, "BANANAS: Bayesian optimization with
neural architectures for neural architecture search", AAAI 2021).

After ``initial`` uniform random archs, every round:
1. fits an ensemble of ``ensemble`` MLPs (``layers`` x ``width``, ReLU; Adam
   ``learning_rate``, ``epochs`` passes of batch ``batch_size``, mean absolute
   error) on every told arch, each member from its own initialisation;
2. makes ``candidates`` unseen candidates by mutating the ``mutate_top`` best told
   archs (each candidate: a parent drawn uniformly among them, then 1 to
   ``max_edits`` one-token mutations, ``space.mutate``);
3. asks the ``round_size`` candidates with the highest independent Thompson
   sample (ITS): one draw per candidate from a Gaussian with the ensemble's mean
   and standard deviation at it.

Encoding: the path encoding where the space defines one (``space.path_encoding``,
NAS-Bench-201), else the one-hot of every field (``space.one_hot``; the paper's
"adjacency" encoding, which it found as good on chain-like spaces such as
NAS-Bench-Macro's). Settings: the paper's 10 initial archs, 10 per round, 5
members of 10 layers x 20, 100 candidates by mutation and ITS; the parents
(top 2) and 1-3 edits per candidate are our untuned choices. Deviations:
the targets are the scores standardised (mean 0, std 1) instead of validation
errors in percent, so one learning rate serves every benchmark's scale; Adam
steps sample minibatches with replacement.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from nao_jax import configuration
from nao_jax.strategies import base
from nao_jax.strategies import surrogate

# Mutation draws per wanted candidate before giving up (a nearly exhausted
# neighbourhood of the best archs).
_DRAWS_PER_CANDIDATE = 10


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      initial=10,  # Uniform random archs before the first fit.
      round_size=10,  # k: archs asked per round.
      ensemble=5,
      layers=10,
      width=20,
      epochs=200,
      batch_size=32,
      learning_rate=0.01,
      candidates=100,
      mutate_top=2,  # Parents: the best this many told archs.
      max_edits=3,  # A candidate is 1..max_edits one-token mutations from its parent.
  ))


class MLP(nn.Module):
  """``layers`` ReLU layers of ``width``, then one output: float ``[B, D]`` -> ``[B]``."""
  layers: int
  width: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    for _ in range(self.layers):
      x = nn.relu(nn.Dense(self.width)(x))
    return nn.Dense(1)(x)[..., 0]


def encode(space: base.SearchSpace, archs: list[Any]) -> np.ndarray:
  """float32 ``[N, D]``: path encodings if the space has them, else one-hots."""
  paths = [space.path_encoding(a) for a in archs]
  if paths and paths[0] is not None:
    return np.stack(paths)
  return np.stack([space.one_hot(a) for a in archs])


def _check(config: ml_collections.ConfigDict) -> None:
  for field in ("ensemble", "layers", "width", "epochs", "batch_size", "candidates",
                "mutate_top", "max_edits"):
    configuration.positive_int(config, field)
  configuration.number_in(config, "learning_rate", 1e-8, 10.0)


def _candidates(state: surrogate.SurrogateState, rng: np.random.Generator) -> list[Any]:
  space, archive = state.space, state.archive
  parents = [space.decode(archive.tokens[i]) for i in archive.best(state.config.mutate_top)]
  found, hashes = [], set(archive.seen)
  for _ in range(_DRAWS_PER_CANDIDATE * state.config.candidates):
    if len(found) == state.config.candidates:
      break
    arch = parents[rng.integers(len(parents))]
    for _ in range(rng.integers(1, state.config.max_edits + 1)):
      arch = space.mutate(rng, arch)
    h = space.arch_hash(arch)
    if h not in hashes:
      hashes.add(h)
      found.append(arch)
  return found


def propose(state: surrogate.SurrogateState, rng: np.random.Generator, key: jax.Array,
            n: int) -> list[Any]:
  """The ``n`` candidates with the highest Thompson draws (see the module docstring)."""
  candidates = _candidates(state, rng)
  if not candidates:
    return []
  c = state.config
  space, archive = state.space, state.archive
  told = encode(space, [space.decode(row) for row in archive.tokens])
  scale = archive.scores.std() or 1.0
  targets = (archive.scores - archive.scores.mean()) / scale
  model = MLP(c.layers, c.width)
  params = surrogate.fit(model, (told,), targets, key, epochs=c.epochs,
                         batch_size=c.batch_size, learning_rate=c.learning_rate,
                         weight_decay=0.0, loss="mae", ensemble=c.ensemble)
  predictions = surrogate.predict(model, params, (encode(space, candidates),))
  draws = rng.normal(predictions.mean(0), predictions.std(0))
  order = np.argsort(-draws, kind="stable")[:n]
  return [candidates[i] for i in order]


STRATEGY = surrogate.make_strategy(propose, _check)
