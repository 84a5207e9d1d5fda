"""Controller state, target transforms, loss and the compiled multi-epoch fit (reference §4).

``fit`` pads the pool to a fixed capacity (``batch_size * 2^k`` unless
``train.pool_capacity`` is set) and runs all epochs as ONE compiled call: a
``lax.while_loop`` whose trip count (``epochs * ceil(n / batch_size)``) is a
traced value, so neither the number of epochs nor the pool size (within a
capacity bucket) causes a retrace. Each epoch shuffles the valid rows; the
last batch of an epoch may be partly masked, exactly like PyTorch's smaller
last batch. Per epoch, ``split(fold_in(key, epoch))`` gives the shuffle key and the
key folded with each batch index (augmentation, dropout).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from nao_jax.controller import config as config_lib
from nao_jax.controller import model as model_lib
from nao_jax.spaces import base

Array = jax.Array

# Number of times each compiled function has been traced (tests assert no retrace).
TRACE_COUNTS: dict[str, int] = {}


def _count_trace(name: str) -> None:
  TRACE_COUNTS[name] = TRACE_COUNTS.get(name, 0) + 1


class ControllerState(train_state.TrainState):
  """A flax ``TrainState`` plus the space's tables and the settings.

  Attributes (beyond ``step``, ``params``, ``opt_state``, ``apply_fn``, ``tx``):
    allowed: bool ``[L, V]``, the tokens valid at each position.
    symmetries: int32 ``[P, L]``, token permutations giving equivalent sequences.
    settings: the validated ``config.Settings`` (static).
  All array fields are checkpointable with orbax; restore into ``init(...)``'s output.
  """
  allowed: Array
  symmetries: Array
  settings: config_lib.Settings = flax.struct.field(pytree_node=False)


def _clipped_adam_l2(learning_rate: float, weight_decay: float, grad_clip: float
                     ) -> optax.GradientTransformation:
  return optax.chain(optax.clip_by_global_norm(grad_clip),
                     optax.add_decayed_weights(weight_decay),
                     optax.adam(learning_rate))


@functools.lru_cache(maxsize=None)
def make_optimizer(learning_rate: float, weight_decay: float, grad_clip: float
                   ) -> optax.GradientTransformation:
  """Clip by global norm, coupled L2 (torch Adam ``weight_decay``), then Adam.

  The learning rate is an injected hyperparameter (``opt_state.hyperparams``) so
  that ``fit`` can schedule it over a traced number of steps. Cached so that
  equal settings give the identical object (no jit retrace).
  """
  return optax.inject_hyperparams(_clipped_adam_l2, static_args=("weight_decay", "grad_clip"))(
      learning_rate=learning_rate, weight_decay=weight_decay, grad_clip=grad_clip)


@functools.lru_cache(maxsize=None)
def make_model(settings: config_lib.Settings) -> model_lib.Controller:
  """The (cached) linen module for ``settings``."""
  return model_lib.Controller(**settings.model_kwargs())


def init(key: Array, space: base.SearchSpace, config: ml_collections.ConfigDict
         ) -> ControllerState:
  """A fresh controller for ``space`` from the ``controller`` config section."""
  settings = config_lib.settings_from_config(config, space)
  model = make_model(settings)
  tokens = jnp.ones((1, settings.length), jnp.int32)
  params = jax.jit(model.init)(key, tokens)["params"]
  tx = make_optimizer(settings.learning_rate, settings.weight_decay, settings.grad_clip)
  return ControllerState.create(
      apply_fn=model.apply, params=params, tx=tx,
      allowed=jnp.asarray(space.allowed), symmetries=jnp.asarray(space.symmetry_permutations()),
      settings=settings)


def num_params(state: ControllerState) -> int:
  """Number of trainable parameters."""
  return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(state.params))


# ---- targets ------------------------------------------------------------------------------------


def transform_targets(raw_scores: np.ndarray, transform: str, maximize: bool) -> np.ndarray:
  """Raw scores ``[N]`` -> regression targets in [0, 1], higher = better.

  * ``minmax`` (reference): ``(s - min) / (max - min)``; 0.5 for all when degenerate.
  * ``rank``: average rank / (N - 1) (robust to long tails such as broken cells).
  * ``standardize``: ``sigmoid((s - mean) / std)``; 0.5 for all when std is 0.
  """
  scores = np.asarray(raw_scores, np.float64)
  if scores.ndim != 1 or not np.all(np.isfinite(scores)):
    raise ValueError(f"raw scores must be a finite 1-D array, got shape {scores.shape} "
                     f"with {int(np.sum(~np.isfinite(scores)))} non-finite values.")
  if not maximize:
    scores = -scores
  n = scores.shape[0]
  if n < 2 or np.ptp(scores) == 0.0:
    return np.full(n, 0.5, np.float32)
  if transform == "minmax":
    y = (scores - scores.min()) / np.ptp(scores)
  elif transform == "rank":
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts + 1) / 2  # Ties share their mean rank.
    y = mean_rank[inverse] / (n - 1)
  elif transform == "standardize":
    y = 1.0 / (1.0 + np.exp(-(scores - scores.mean()) / scores.std()))
  else:
    raise ValueError(f"unknown target transform {transform!r}; choose one of "
                     f"{list(config_lib.TARGET_TRANSFORMS)}.")
  return y.astype(np.float32)


def pool_capacity(settings: config_lib.Settings, n: int) -> int:
  """Rows the pool is padded to: the configured capacity or ``batch_size * 2^k >= n``."""
  if settings.pool_capacity:
    if n > settings.pool_capacity:
      raise ValueError(f"the pool has {n} archs but train.pool_capacity is "
                       f"{settings.pool_capacity}; raise it (or set 0 for automatic).")
    return settings.pool_capacity
  capacity = settings.batch_size
  while capacity < n:
    capacity *= 2
  return capacity


# ---- loss and step ------------------------------------------------------------------------------


def loss_fn(params: Any, state: ControllerState, tokens: Array, targets: Array, weights: Array,
            key: Array) -> tuple[Array, dict[str, Array]]:
  """``lambda * MSE + (1 - lambda) * token NLL`` over the rows with weight 1.

  Args: tokens int32 ``[B, L]``; targets, weights float32 ``[B]``; a dropout key.
  Returns the loss and ``{'mse', 'nll'}`` (weighted means).
  """
  settings = state.settings
  pred, logits, _ = state.apply_fn({"params": params}, tokens, train=True,
                                   rngs={"dropout": key})
  if settings.masked_nll:
    logits = jnp.where(state.allowed[None], logits, -jnp.inf)
  log_probs = jax.nn.log_softmax(logits)
  token_nll = -jnp.take_along_axis(log_probs, tokens[..., None], axis=-1)[..., 0]
  count = jnp.maximum(jnp.sum(weights), 1.0)
  mse = jnp.sum(weights * (pred - targets) ** 2) / count
  nll = jnp.sum(weights * jnp.mean(token_nll, axis=-1)) / count
  loss = settings.trade_off * mse + (1.0 - settings.trade_off) * nll
  return loss, {"mse": mse, "nll": nll}


def augment(state: ControllerState, tokens: Array, key: Array) -> Array:
  """Applies one symmetry permutation, drawn per row, to ``tokens [B, L]``."""
  choice = jax.random.randint(key, tokens.shape[:1], 0, state.symmetries.shape[0])
  return jnp.take_along_axis(tokens, state.symmetries[choice], axis=1)


def train_step(state: ControllerState, tokens: Array, targets: Array, weights: Array,
               key: Array) -> tuple[ControllerState, dict[str, Array]]:
  """One optimiser step on a (possibly partly masked) batch; pure, jit-able."""
  augment_key, dropout_key = jax.random.split(key)
  if state.settings.augment:
    tokens = augment(state, tokens, augment_key)
  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, state, tokens, targets, weights, dropout_key)
  return state.apply_gradients(grads=grads), {"loss": loss, **aux}


@jax.jit
def _fit_compiled(state: ControllerState, tokens: Array, targets: Array, num_valid: Array,
                  epochs: Array, key: Array) -> tuple[ControllerState, dict[str, Array]]:
  """All epochs in one call. tokens ``[C, L]``, targets ``[C]``; rows >= num_valid are padding."""
  _count_trace("fit")
  capacity = tokens.shape[0]
  batch = state.settings.batch_size
  steps_per_epoch = (num_valid + batch - 1) // batch
  total_steps = epochs * steps_per_epoch
  zero = jnp.zeros((), jnp.float32)
  names = ("loss", "mse", "nll")

  def body(carry):
    step, state, sums, first = carry
    epoch, index = step // steps_per_epoch, step % steps_per_epoch
    shuffle_key, batch_key = jax.random.split(jax.random.fold_in(key, epoch))
    # Valid rows first, shuffled; padding rows last.
    noise = jax.random.uniform(shuffle_key, (capacity,))
    order = jnp.argsort(noise + (jnp.arange(capacity) >= num_valid))
    positions = index * batch + jnp.arange(batch)
    rows = jax.lax.dynamic_slice(order, (index * batch,), (batch,))
    weights = (positions < num_valid).astype(jnp.float32)
    if state.settings.lr_schedule == "cosine":  # Decays to 0 over this fit's steps.
      progress = step.astype(jnp.float32) / total_steps.astype(jnp.float32)
      hyperparams = dict(state.opt_state.hyperparams)
      hyperparams["learning_rate"] = jnp.asarray(
          state.settings.learning_rate * 0.5 * (1.0 + jnp.cos(jnp.pi * progress)),
          hyperparams["learning_rate"].dtype)
      state = state.replace(opt_state=state.opt_state._replace(hyperparams=hyperparams))
    state, metrics = train_step(state, tokens[rows], targets[rows], weights,
                                jax.random.fold_in(batch_key, index))
    count = jnp.sum(weights)
    metrics = {**{k: metrics[k] * count for k in names}, "count": count}
    sums = {k: jnp.where(index == 0, 0.0, sums[k]) + metrics[k] for k in sums}
    end_of_first = (epoch == 0) & (index == steps_per_epoch - 1)
    first = {k: jnp.where(end_of_first, sums[k], first[k]) for k in first}
    return step + 1, state, sums, first

  sums = {k: zero for k in (*names, "count")}
  _, state, sums, first = jax.lax.while_loop(
      lambda carry: carry[0] < total_steps, body, (jnp.zeros((), jnp.int32), state, sums, sums))
  metrics = {k: sums[k] / sums["count"] for k in names}
  metrics.update({f"first_epoch_{k}": first[k] / first["count"] for k in names})
  return state, metrics


def pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
  """Pads ``x`` along axis 0 to ``rows`` with copies of its first row."""
  if x.shape[0] == rows:
    return x
  return np.concatenate([x, np.repeat(x[:1], rows - x.shape[0], axis=0)])


def fit(state: ControllerState, tokens: np.ndarray, raw_scores: np.ndarray, key: Array,
        epochs: int | None = None, maximize: bool = True
        ) -> tuple[ControllerState, dict[str, float]]:
  """Trains the controller on a pool; one compiled call for all epochs.

  Args:
    state: from ``init`` or a previous ``fit``.
    tokens: int ``[N, L]`` sequences of the pool (N >= 1).
    raw_scores: ``[N]`` measured scores (transformed by ``train.target_transform``).
    key: PRNG key (shuffling, augmentation, dropout).
    epochs: defaults to ``train.epochs``.
    maximize: whether higher raw scores are better (False for error rates, perplexities).
  Returns:
    The new state and last-epoch means ``loss``, ``mse``, ``nll`` (plus ``first_epoch_*``).
  Raises:
    ValueError on bad shapes, non-finite scores, or a non-finite loss.
  """
  settings = state.settings
  tokens = np.asarray(tokens)
  if tokens.ndim != 2 or tokens.shape[1] != settings.length or tokens.shape[0] < 1:
    raise ValueError(f"tokens must be [N >= 1, {settings.length}], got {tokens.shape}.")
  if np.shape(raw_scores) != tokens.shape[:1]:
    raise ValueError(f"raw_scores must have shape [{tokens.shape[0]}], "
                     f"got {np.shape(raw_scores)}.")
  epochs = settings.epochs if epochs is None else int(epochs)
  if epochs < 1:
    raise ValueError(f"epochs must be >= 1, got {epochs}.")
  targets = transform_targets(raw_scores, settings.target_transform, maximize)
  n = tokens.shape[0]
  capacity = pool_capacity(settings, n)
  if settings.reset_optimizer:
    state = state.replace(opt_state=state.tx.init(state.params))
  state, metrics = _fit_compiled(
      state, jnp.asarray(pad_rows(tokens.astype(np.int32), capacity)),
      jnp.asarray(pad_rows(targets, capacity)), jnp.int32(n), jnp.int32(epochs), key)
  metrics = {k: float(v) for k, v in metrics.items()}
  bad = [k for k, v in metrics.items() if not np.isfinite(v)]
  if bad:
    raise ValueError(f"controller training diverged: non-finite {bad} after {epochs} epochs "
                     f"(steps up to {int(state.step)}); lower train.learning_rate.")
  return state, metrics
