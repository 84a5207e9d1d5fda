"""The neural predictor of Wen, Liu, Chen, Li, Bender, Kindermans, "Neural
Predictor for Neural Architecture Search" (ECCV 2020), as a search strategy.

The predictor is a graph convolutional network on the arch's op graph
(``space.op_graph``: adjacency and one-hot op labels). Each of its ``layers``
layers propagates along the edges and against them with separate weights and
averages the two (the paper's bidirectional GCN; adjacency with self-loops,
row-normalised), ReLU, width ``hidden``; the vertex features are averaged, a
``head``-unit ReLU layer and a sigmoid give the predicted score, min-max scaled
to [0, 1] on the told archs. Trained with mean squared error by Adam
(``learning_rate``, decoupled ``weight_decay``) for ``epochs`` passes of batch
``batch_size``, dropout ``dropout`` after each graph layer.

The paper fits the predictor once on N random archs and then evaluates its top
K; as an ask/tell strategy it does so round after round: ``initial`` uniform
random archs, then every round refits on every told arch (from its own
initialisation) and asks the ``round_size`` best predicted among ``candidates``
fresh uniform random unseen archs (the paper ranks the whole space; a sample
keeps the cost independent of the space's size).

Settings: the bidirectional graph layers, the mean over vertices and the MSE
regression are the paper's; 3 layers of 144 units, Adam 1e-4 with weight decay
1e-3, 300 epochs of batch 10, ``initial = round_size = 10`` and
``candidates = 10,000`` are our untuned choices.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nao_jax import configuration
from nao_jax.strategies import base
from nao_jax.strategies import surrogate


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      initial=10,  # Uniform random archs before the first fit.
      round_size=10,  # Archs asked per round.
      candidates=10_000,  # Random unseen archs ranked per round.
      layers=3,
      hidden=144,
      head=128,
      dropout=0.1,
      epochs=300,
      batch_size=10,
      learning_rate=1e-4,
      weight_decay=1e-3,
  ))


def _normalise(adjacency: jax.Array) -> jax.Array:
  """Row-normalised ``adjacency + I``: float ``[B, V, V]``."""
  with_self = adjacency + jnp.eye(adjacency.shape[-1], dtype=adjacency.dtype)
  return with_self / with_self.sum(-1, keepdims=True)


class GCN(nn.Module):
  """(adjacency ``[B, V, V]``, labels ``[B, V, F]``) -> predicted score ``[B]`` in (0, 1)."""
  layers: int
  hidden: int
  head: int
  dropout: float

  @nn.compact
  def __call__(self, adjacency: jax.Array, labels: jax.Array,
               train: bool = False) -> jax.Array:
    # Row i of ``forward`` averages over i's predecessors (edges j -> i).
    forward = _normalise(jnp.swapaxes(adjacency, -1, -2))
    backward = _normalise(adjacency)
    x = labels
    for _ in range(self.layers):
      along = forward @ nn.Dense(self.hidden)(x)
      against = backward @ nn.Dense(self.hidden)(x)
      x = 0.5 * (nn.relu(along) + nn.relu(against))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.relu(nn.Dense(self.head)(x.mean(axis=-2)))
    return nn.sigmoid(nn.Dense(1)(x)[..., 0])


def graphs(space: base.SearchSpace, archs: list[Any]) -> tuple[np.ndarray, np.ndarray]:
  """Stacked op graphs: float32 adjacency ``[N, V, V]`` and labels ``[N, V, F]``."""
  pairs = [space.op_graph(a) for a in archs]
  return np.stack([a for a, _ in pairs]), np.stack([l for _, l in pairs])


def _check(config: ml_collections.ConfigDict) -> None:
  for field in ("candidates", "layers", "hidden", "head", "epochs", "batch_size"):
    configuration.positive_int(config, field)
  configuration.number_in(config, "dropout", 0.0, 0.99)
  configuration.number_in(config, "learning_rate", 1e-8, 10.0)
  configuration.number_in(config, "weight_decay", 0.0, 1.0)


def propose(state: surrogate.SurrogateState, rng: np.random.Generator, key: jax.Array,
            n: int) -> list[Any]:
  """The ``n`` best predicted of ``candidates`` random unseen archs."""
  c, space, archive = state.config, state.space, state.archive
  candidates = base.sample_unseen(space, rng, c.candidates, archive.seen)
  if not candidates:
    return []
  low, high = archive.scores.min(), archive.scores.max()
  targets = (archive.scores - low) / ((high - low) or 1.0)
  model = GCN(c.layers, c.hidden, c.head, c.dropout)
  params = surrogate.fit(model, graphs(space, [space.decode(r) for r in archive.tokens]),
                         targets, key, epochs=c.epochs, batch_size=c.batch_size,
                         learning_rate=c.learning_rate, weight_decay=c.weight_decay)
  predicted = surrogate.predict(model, params, graphs(space, candidates))[0]
  return [candidates[i] for i in np.argsort(-predicted, kind="stable")[:n]]


STRATEGY = surrogate.make_strategy(propose, _check)
