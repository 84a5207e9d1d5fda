"""What the predictor-based strategies (``gcn``, ``bananas``) share: a warm-up of
uniform random archs, then rounds that fit a surrogate on every told arch and ask
the candidates it ranks best, and the jitted loop that fits a Flax regressor.

A surrogate strategy is defined by one function,

  propose(state, rng, key, n) -> list of up to n unseen, distinct archs

called once the warm-up is told; ``rng`` (numpy) and ``key`` (JAX) are derived
from ``(seed, ask index)``, so the surrogate is refit from the archive at every
ask and a restored state asks exactly what the uninterrupted run would have.
The state holds no parameters: only the archive is saved.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from nao_jax import configuration
from nao_jax.strategies import base


@dataclasses.dataclass(frozen=True)
class SurrogateState:
  """Attributes:
    space, seed: the search space and the run's seed.
    config: the strategy's config section (read-only).
    archive: every arch asked for and told.
    num_asks: asks so far.
  """
  space: base.SearchSpace
  seed: int
  config: ml_collections.ConfigDict
  archive: base.Archive
  num_asks: int


Propose = Callable[[SurrogateState, np.random.Generator, jax.Array, int], list[Any]]


def make_strategy(propose: Propose, check: Callable[[ml_collections.ConfigDict], None]
                  ) -> base.Strategy:
  """The ``Strategy`` that warms up with ``config.initial`` random archs, then
  asks ``config.round_size`` per round from ``propose`` (topped up with random
  archs if it finds fewer). ``check(config)`` validates the strategy's own fields."""

  def init(seed: int, space: base.SearchSpace,
           config: ml_collections.ConfigDict) -> SurrogateState:
    configuration.positive_int(config, "initial")
    configuration.positive_int(config, "round_size")
    check(config)
    return SurrogateState(space, int(seed), ml_collections.FrozenConfigDict(config),
                          base.Archive.empty(space), 0)

  def round_size(state: SurrogateState) -> int:
    asked = len(state.archive) + len(state.archive.pending)
    if asked < state.config.initial:
      return state.config.initial - asked
    return state.config.round_size

  def ask(state: SurrogateState, n: int) -> tuple[list[Any], SurrogateState]:
    rng = base.numpy_rng(state.seed, state.num_asks)
    archs = []
    if len(state.archive) >= state.config.initial and n:
      key = jax.random.fold_in(jax.random.key(state.seed), state.num_asks)
      archs = propose(state, rng, key, n)
    seen = set(state.archive.seen) | {state.space.arch_hash(a) for a in archs}
    archs += base.sample_unseen(state.space, rng, n - len(archs), seen)
    archive = state.archive.add_pending(state.space, archs)
    return archs, dataclasses.replace(state, archive=archive, num_asks=state.num_asks + 1)

  def tell(state: SurrogateState, archs: Sequence[Any],
           scores: Sequence[float]) -> SurrogateState:
    return dataclasses.replace(state, archive=state.archive.add_told(state.space, archs, scores))

  def save(state: SurrogateState) -> tuple[dict[str, Any], dict[str, Any]]:
    return {}, {"archive": state.archive.to_record(), "num_asks": state.num_asks}

  def restore(seed: int, space: base.SearchSpace, config: ml_collections.ConfigDict,
              arrays: dict[str, Any], record: dict[str, Any]) -> SurrogateState:
    del arrays
    return dataclasses.replace(init(seed, space, config),
                               archive=base.Archive.from_record(space, record["archive"]),
                               num_asks=int(record["num_asks"]))

  return base.Strategy(init, round_size, ask, tell, save, restore)


def _capacity(n: int) -> int:
  """Rows the training arrays are padded to (a power of two), so that a growing
  archive recompiles the fitting loop only when it doubles."""
  return max(16, 1 << (n - 1).bit_length())


@functools.partial(jax.jit, static_argnames=("model", "loss", "batch_size", "ensemble"))
def _fit(model: nn.Module, loss: str, batch_size: int, ensemble: int, inputs: Any,
         targets: jax.Array, count: jax.Array, steps: jax.Array, learning_rate: jax.Array,
         weight_decay: jax.Array, key: jax.Array) -> Any:
  """Params of ``ensemble`` independently initialised models (stacked on axis 0),
  each trained ``steps`` Adam steps on minibatches drawn uniformly from the first
  ``count`` rows of ``inputs``/``targets``."""
  optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)

  def one(member_key):
    init_key, loop_key = jax.random.split(member_key)
    params = model.init(init_key, *jax.tree.map(lambda x: x[:1], inputs))

    def loss_fn(params, batch_inputs, batch_targets, dropout_key):
      predicted = model.apply(params, *batch_inputs, train=True, rngs={"dropout": dropout_key})
      error = predicted - batch_targets
      return jnp.mean(jnp.abs(error)) if loss == "mae" else jnp.mean(error ** 2)

    def step(i, carry):
      params, opt_state = carry
      batch_key, dropout_key = jax.random.split(jax.random.fold_in(loop_key, i))
      rows = jax.random.randint(batch_key, (batch_size,), 0, count)
      batch = jax.tree.map(lambda x: x[rows], inputs)
      grads = jax.grad(loss_fn)(params, batch, targets[rows], dropout_key)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    params, _ = jax.lax.fori_loop(0, steps, step, (params, optimizer.init(params)))
    return params

  return jax.vmap(one)(jax.random.split(key, ensemble))


def fit(model: nn.Module, inputs: tuple[np.ndarray, ...], targets: np.ndarray,
        key: jax.Array, *, epochs: int, batch_size: int, learning_rate: float,
        weight_decay: float, loss: str = "mse", ensemble: int = 1) -> Any:
  """Trains ``ensemble`` copies of ``model`` (``model.apply(params, *inputs, train=...)``
  returns float ``[B]``) with Adam (decoupled ``weight_decay``) for ``epochs``
  passes of ``ceil(N / batch_size)`` minibatch steps each.

  Args:
    inputs: arrays with a leading axis of N archs.
    targets: float ``[N]``.
    loss: ``"mse"`` or ``"mae"``.
  Returns:
    the members' params, stacked on a leading axis of size ``ensemble``
    (``predict`` takes them).
  """
  count = len(targets)
  capacity = _capacity(count)
  padded = tuple(np.concatenate([x, np.zeros((capacity - count,) + x.shape[1:], x.dtype)])
                 for x in inputs)
  padded_targets = np.concatenate([targets, np.zeros(capacity - count)]).astype(np.float32)
  steps = epochs * math.ceil(count / batch_size)
  return _fit(model, loss, batch_size, ensemble, padded, jnp.asarray(padded_targets),
              jnp.int32(count), jnp.int32(steps), jnp.float32(learning_rate),
              jnp.float32(weight_decay), key)


@functools.partial(jax.jit, static_argnames=("model",))
def _predict(model: nn.Module, params: Any, inputs: Any) -> jax.Array:
  return jax.vmap(lambda p: model.apply(p, *inputs, train=False))(params)


def predict(model: nn.Module, params: Any, inputs: tuple[np.ndarray, ...],
            chunk: int = 4096) -> np.ndarray:
  """Predictions of every ensemble member: float ``[ensemble, N]``, computed in
  chunks of ``chunk`` rows (padded, so one program serves every chunk)."""
  count = len(inputs[0])
  chunk = min(chunk, _capacity(count))
  outputs = []
  for start in range(0, count, chunk):
    part = tuple(x[start:start + chunk] for x in inputs)
    size = len(part[0])
    part = tuple(np.concatenate([x, np.zeros((chunk - size,) + x.shape[1:], x.dtype)])
                 for x in part)
    outputs.append(np.asarray(_predict(model, params, part))[:, :size])
  return np.concatenate(outputs, axis=1) if outputs else np.zeros((0, 0), np.float32)
